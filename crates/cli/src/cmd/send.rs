//! `extrasafe send` and `extrasafe receive`: a call without audio that carries files.

use crate::args::{AudioArgs, CallArgs, FilesArgs, Global, ListenArgs, ReceiveArgs, SendArgs};
use crate::callui::Autopilot;
use crate::exit::Failure;
use crate::output::Output;

fn no_audio() -> AudioArgs {
    AudioArgs {
        mic: None,
        speaker: None,
        audio_in: None,
        looping: false,
        audio_out: None,
        no_noise_suppression: false,
        no_echo_cancel: false,
        no_auto_gain: false,
        opus: "pure".into(),
        no_audio: true,
    }
}

pub async fn run(global: &Global, args: &SendArgs, out: Output) -> Result<i32, Failure> {
    let call = CallArgs {
        ticket: args.to.clone(),
        ring_timeout: 45,
        bind: args.bind,
        audio: no_audio(),
        video: Default::default(),
        files: FilesArgs {
            // A sender takes nothing in return.
            accept_files: vec!["none".into()],
            files_dir: None,
            allow_hidden_files: false,
        },
    };
    let auto = Autopilot {
        send: args.paths.clone(),
        hangup_when_done: true,
    };
    super::call::run(global, &call, out, auto).await
}

pub async fn receive(global: &Global, args: &ReceiveArgs, out: Output) -> Result<i32, Failure> {
    let listen = ListenArgs {
        port: args.port,
        bind: args.bind,
        accept: args.accept.clone(),
        once: args.once,
        qr: args.qr,
        audio: no_audio(),
        video: Default::default(),
        files: args.files.clone(),
    };
    super::listen::run(global, &listen, out).await
}
