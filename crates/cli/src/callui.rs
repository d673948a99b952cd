//! The interactive part of a call: events out, typed lines in.

use std::collections::VecDeque;

use extrasafe_app::media::{CallMedia, MediaEnd, MediaError};
use extrasafe_core::EndReason;
use extrasafe_net::{Call, CallEvent};
use tokio::io::AsyncBufReadExt;
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::mpsc;

use crate::audioplan::AudioPlan;
use crate::exit::describe_end;
use crate::files::Files;
use std::io::IsTerminal;

use crate::output::Output;
use crate::videoplan::VideoPlan;

/// Lines typed on stdin; `None` once at end of input.
pub struct Input {
    rx: mpsc::Receiver<Option<String>>,
    done: bool,
}

impl Input {
    pub fn spawn() -> Self {
        let (tx, rx) = mpsc::channel(64);
        tokio::spawn(async move {
            let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if tx.send(Some(line)).await.is_err() {
                    return;
                }
            }
            let _ = tx.send(None).await;
        });
        Self { rx, done: false }
    }

    /// Drops lines typed while no call was up, so a stray `yes` or `/hangup` cannot answer or
    /// end the next call, and nothing typed earlier is sent to a stranger.
    pub fn discard_typed_ahead(&mut self) {
        while let Ok(line) = self.rx.try_recv() {
            if line.is_none() {
                self.done = true;
            }
        }
    }

    async fn next(&mut self) -> Option<String> {
        if self.done {
            return std::future::pending().await;
        }
        match self.rx.recv().await.flatten() {
            Some(l) => Some(l),
            None => {
                self.done = true;
                None
            }
        }
    }
}

/// Ctrl-C and SIGTERM, as one stream. The handlers are installed once, so a signal that
/// arrives while nobody is waiting is kept for the next wait, not lost.
pub struct Interrupts {
    int: Signal,
    term: Signal,
}

impl Interrupts {
    pub fn new() -> Self {
        Self {
            int: signal(SignalKind::interrupt()).expect("installing a SIGINT handler"),
            term: signal(SignalKind::terminate()).expect("installing a SIGTERM handler"),
        }
    }
    pub async fn next(&mut self) {
        tokio::select! {
            _ = self.int.recv() => {}
            _ = self.term.recv() => {}
        }
    }
}

const HELP: &str = "Type a line and press Enter to send it.  /mute, /unmute.  /video turns your video off and on; /screen shares your screen (again: stops sharing).  /send PATH offers a file or folder; /accept [FOLDER], /decline answer an offer; /cancel stops transfers.  /stats shows the call's figures (round trip, loss, jitter, buffer, rate, path).  /hangup ends the call (so does Ctrl-D).  A line that starts with / and is no command is not sent; start a message with // to send one that begins with /.";

/// What the call does by itself (for `extrasafe send`).
#[derive(Clone, Debug, Default)]
pub struct Autopilot {
    /// Offer these once connected.
    pub send: Vec<std::path::PathBuf>,
    /// Hang up once every transfer has ended.
    pub hangup_when_done: bool,
}

/// What a call carries besides chat and files.
#[derive(Clone, Copy)]
pub struct Media<'a> {
    pub audio: &'a AudioPlan,
    pub video: &'a VideoPlan,
}

/// Runs a call until it ends; returns why, and the exit code that reason maps to.
pub async fn run(
    mut call: Call,
    out: Output,
    input: &mut Input,
    intr: &mut Interrupts,
    media: Media<'_>,
    files: &mut Files,
    auto: &Autopilot,
) -> (EndReason, i32) {
    let Media {
        audio: plan,
        video: vplan,
    } = media;
    // Before any offer arrives: offers are checked (and refused) as they come in.
    if files.allow_hidden {
        call.allow_hidden_files(true);
    }
    let mut files_tick = tokio::time::interval(std::time::Duration::from_millis(250));
    // The call's audio and video, and how mute, video and screen sharing combine: the
    // application layer's, as in the desktop app.
    let mut media: Option<CallMedia> = None;
    let mut video_fault_told = false;
    let mut stats_tick = tokio::time::interval(std::time::Duration::from_secs(5));
    stats_tick.tick().await;
    let mut queued: VecDeque<String> = VecDeque::new();
    let mut connected = false;
    // The path is lost for now: lines wait in `queued` until the call is back.
    let mut reconnecting = false;
    // Ctrl-C before the call connected (while ringing, or asked): exit 130, as documented.
    let mut interrupted_early = false;
    let mut asking = false;
    let mut input_over = false;
    let mut device_warned = false;
    loop {
        tokio::select! {
            ev = call.next_event() => match ev {
                Some(CallEvent::Incoming) => {
                    asking = true;
                    out.incoming(call.info());
                }
                Some(CallEvent::Ringing) => out.ringing(),
                Some(CallEvent::VerificationCode(code)) => out.verification(&code),
                Some(CallEvent::Connected { after }) => {
                    connected = true;
                    asking = false;
                    out.connected(call.info(), after);
                    let audio = plan.start(&call, out).await;
                    let video = vplan.start(&call, out).await;
                    let has_source = video.as_ref().is_some_and(|(_, s)| *s);
                    media = Some(CallMedia::new(audio, video.map(|(v, _)| v), has_source));
                    while let Some(line) = queued.pop_front() {
                        send(&call, out, line).await;
                    }
                    if !auto.send.is_empty() {
                        files.send(&call, &auto.send).await;
                    }
                    if auto.hangup_when_done && !files.busy() {
                        call.hangup();
                    }
                    if input_over && !auto.hangup_when_done {
                        call.hangup();
                    }
                }
                Some(CallEvent::Reconnecting) => {
                    reconnecting = true;
                    out.reconnecting();
                }
                Some(CallEvent::Reconnected) => {
                    reconnecting = false;
                    out.reconnected(call.media().remote());
                    while let Some(line) = queued.pop_front() {
                        send(&call, out, line).await;
                    }
                }
                Some(CallEvent::Chat { text, at }) => out.chat("them", &text, at),
                Some(CallEvent::FilesOffered { id, offer }) => {
                    if let Some((id, yes)) = files.offered(&call, id, offer) {
                        if yes {
                            files.accept(&call, Some(id), None);
                        } else {
                            files.decline(&call, Some(id)).await;
                        }
                    }
                }
                Some(CallEvent::Ended(reason)) => {
                    files.clear_status();
                    // Transfers end with the connection; report how.
                    files.wind_up().await;
                    let end = match media.take() {
                        Some(m) => m.stop().await,
                        None => MediaEnd { audio: None, video: None },
                    };
                    if let Some((stats, written)) = end.video {
                        out.video_stats(&stats);
                        match (written, vplan.record_path()) {
                            (Ok(()), Some(p)) => out.hint(format!("Wrote the video you received to {}.", p.display())),
                            (Err(e), _) => out.warn(&format!("Could not write the received video: {e}")),
                            _ => {}
                        }
                    }
                    if let Some((stats, written)) = end.audio {
                        out.stats(&stats);
                        match (written, plan.record_path()) {
                            (Ok(()), Some(p)) => out.hint(format!("Wrote what you heard to {}.", p.display())),
                            (Err(e), _) => out.warn(&format!("Could not write the recording: {e}")),
                            _ => {}
                        }
                    }
                    let (code, human) = describe_end(&reason);
                    out.ended(&reason, &human);
                    let code = if interrupted_early && matches!(reason, EndReason::LocalHangup) {
                        crate::exit::INTERRUPTED
                    } else {
                        code
                    };
                    return (reason, code);
                }
                Some(_) => {}
                None => {
                    if let Some(m) = media.take() {
                        let _ = m.stop().await;
                    }
                    return (EndReason::PeerVanished, crate::exit::BROKEN);
                }
            },
            line = input.next(), if !input_over => match line {
                None => {
                    input_over = true;
                    if asking {
                        call.decline();
                    } else if connected && !auto.hangup_when_done {
                        call.hangup();
                    }
                }
                Some(line) if asking => {
                    asking = false;
                    match line.trim().to_ascii_lowercase().as_str() {
                        "y" | "yes" | "a" | "accept" | "answer" => call.accept(),
                        _ => call.decline(),
                    }
                }
                Some(line) => match line.trim() {
                    "/hangup" | "/bye" | "/quit" | "/exit" => call.hangup(),
                    "/mute" | "/unmute" => {
                        let mute = line.trim() == "/mute";
                        match media.as_mut().map(|m| m.set_muted(mute)) {
                            Some(Ok(_)) => out.hint(if mute {
                                "Muted. The other side still gets packets of the same size, carrying silence."
                            } else {
                                "Unmuted."
                            }),
                            _ => out.hint("This call carries no audio."),
                        }
                    }
                    "/video" => {
                        let on = !media.as_ref().is_some_and(|m| m.state().camera_on);
                        match media.as_mut().map(|m| m.set_camera(on, None)) {
                            Some(Ok(st)) if st.camera_on => out.hint("Video on."),
                            Some(Ok(st)) if st.sharing => out.hint("Video off; your screen is still shared (/screen stops that)."),
                            Some(Ok(_)) => out.hint("Video off: nothing of it is sent."),
                            Some(Err(MediaError::NoSource)) => out.hint("This call sends no video (it was started to receive only, or its source failed): start one with --video test|screen|FILE."),
                            _ => out.hint("This call carries no video: start it with --video test|screen|FILE (or --video-out FILE.y4m to receive only)."),
                        }
                    }
                    "/screen" => match media.as_mut() {
                        Some(m) if m.video().is_some() && m.state().sharing => {
                            let st = m.share(None).ok();
                            out.hint(if st.is_some_and(|s| s.video_paused()) {
                                "Stopped sharing your screen (your video is off)."
                            } else {
                                "Stopped sharing your screen."
                            });
                        }
                        Some(m) if m.video().is_some() => match vplan.screen() {
                            Ok(s) => {
                                let _ = m.share(Some(s));
                                out.hint("Sharing your screen. /screen again stops.");
                            }
                            Err(e) => out.warn(&format!("Cannot share the screen: {e}.")),
                        },
                        _ => out.hint("This call carries no video: start it with --video or --video-out to share your screen."),
                    },
                    "/help" | "/?" => out.hint(HELP),
                    "/stats" => {
                        let mut any = false;
                        if let Some(v) = media.as_ref().and_then(|m| m.video()) {
                            any = true;
                            out.hint(Output::video_line(&v.stats()));
                        }
                        if let Some(a) = media.as_ref().and_then(|m| m.audio()) {
                            any = true;
                            out.hint(Output::stats_line(&a.stats()));
                        }
                        if !any {
                            out.hint(if connected {
                                "This call carries no audio or video: no figures to show."
                            } else {
                                "Figures come once the call is connected."
                            });
                        }
                    }
                    "/decline" => files.decline(&call, None).await,
                    "/cancel" => files.cancel_all(),
                    "/accept" => files.accept(&call, None, None),
                    l if l.starts_with("/accept ") => {
                        files.accept(&call, None, Some(l["/accept ".len()..].trim().into()))
                    }
                    l if l.starts_with("/send ") && connected => {
                        let path = std::path::PathBuf::from(l["/send ".len()..].trim());
                        files.send(&call, &[path]).await;
                    }
                    l if l.starts_with("/send") && l[5..].starts_with(char::is_whitespace) || l == "/send" => {
                        out.hint("/send PATH offers a file or folder, once the call is connected.")
                    }
                    "" => {}
                    // A line that starts with / is a command: a mistyped one (`/sned
                    // ~/private/...`) must never reach the other person as chat. `//` sends
                    // a message that starts with /.
                    l if l.starts_with("//") => {
                        let text = line.trim_start()[1..].to_string();
                        if connected && !reconnecting {
                            send(&call, out, text).await
                        } else {
                            queue(&mut queued, out, text, reconnecting)
                        }
                    }
                    l if l.starts_with('/') => {
                        let word = l.split_whitespace().next().unwrap_or(l);
                        out.warn(&format!(
                            "{word} is not a command; nothing was sent. /help lists the commands; start a message with // to send it beginning with /."
                        ));
                    }
                    _ if connected && !reconnecting => send(&call, out, line).await,
                    _ => queue(&mut queued, out, line, reconnecting),
                },
            },
            _ = intr.next() => {
                interrupted_early |= !connected;
                call.hangup();
            }
            _ = files.next_end(), if files.running() => {
                files.tick().await;
                if auto.hangup_when_done && connected && !files.busy() {
                    call.hangup();
                }
            }
            _ = files_tick.tick(), if files.busy() => {
                files.tick().await;
                if auto.hangup_when_done && connected && !files.busy() {
                    call.hangup();
                }
            }
            _ = stats_tick.tick(), if media.as_ref().is_some_and(|m| m.audio().is_some() || m.video().is_some()) => {
                // For people on a terminal, the stats stay in place below the bars; else
                // (JSON, a pipe) they are printed, one line each time.
                let mut lines = Vec::new();
                if let Some(v) = media.as_ref().and_then(|m| m.video()) {
                    let stats = v.stats();
                    lines.push(Output::video_line(&stats));
                    if out.json {
                        out.video_stats(&stats);
                    }
                    if let (Some(fault), false) = (&stats.fault, video_fault_told) {
                        video_fault_told = true;
                        out.warn(&format!("Video problem: {}.", video_fault_words(fault)));
                    }
                }
                if let Some(a) = media.as_ref().and_then(|m| m.audio()) {
                    let stats = a.stats();
                    lines.push(Output::stats_line(&stats));
                    if out.json {
                        out.stats(&stats);
                    }
                    if let Some(fault) = &stats.device_fault {
                        if !device_warned {
                            device_warned = true;
                            out.warn(&format!(
                                "Audio device problem: {}.",
                                device_fault_words(*fault)
                            ));
                        }
                    }
                }
                if !out.json {
                    if !std::io::stdout().is_terminal() {
                        // A log for people: a line each time, as ever.
                        for line in lines {
                            out.hint(line);
                        }
                    } else if files.running() {
                        // Beside transfer bars (which redraw anyway), in place below them.
                        files.show_status(&lines);
                    } else {
                        // On a terminal with nothing drawn, the figures wait for /stats: a
                        // line every 5 s would land amid the chat and the line being typed.
                        files.clear_status();
                    }
                }
            }
        }
    }
}

/// Keeps a line to send once the call is connected (or back, while it reconnects).
fn queue(queued: &mut VecDeque<String>, out: Output, line: String, reconnecting: bool) {
    if reconnecting {
        out.hint("(kept: it goes out when the call is back)");
    }
    queued.push_back(line);
}

async fn send(call: &Call, out: Output, line: String) {
    match call.send_chat(line.clone()).await {
        Ok(()) => out.sent(&line),
        Err(e) => out.warn(&format!("Not sent: {e}.")),
    }
}

/// A sound device that went away, for the terminal.
fn device_fault_words(f: extrasafe_net::media::io::DeviceFault) -> &'static str {
    use extrasafe_net::media::io::DeviceFault as F;
    match f {
        F::MicrophoneLost => "the sound server closed the microphone; sending silence",
        F::SpeakerLost => "the sound server closed the speaker; you cannot hear the other side",
        _ => "a sound device stopped working",
    }
}

/// A video problem, for the terminal.
fn video_fault_words(f: &extrasafe_net::video::VideoFault) -> String {
    use extrasafe_net::video::VideoFault as F;
    match f {
        F::SourceStopped(e) => format!("the video source stopped ({e})"),
        F::EncoderFailed(e) => format!("the video encoder failed ({e}); trying again"),
        _ => "the video stopped working".into(),
    }
}
