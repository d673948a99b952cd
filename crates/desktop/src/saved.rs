//! The settings a person chose in the window (microphone, speaker, what video calls send,
//! where received files go), kept between runs beside the identity (`settings.json`, mode
//! 0600, written whole through a rename). They name no contact and nothing of a call. A flag
//! given on the command line wins over what was saved, for that run.

use std::path::PathBuf;

use serde_json::{json, Value};

use crate::model::{Settings, VideoChoice};

/// What the saved file says; a field missing or of the wrong kind is left unset (a file from
/// another version, or edited by hand, loses nothing else).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Saved {
    pub mic: Option<Option<String>>,
    pub speaker: Option<Option<String>>,
    pub video: Option<VideoChoice>,
    pub files_dir: Option<PathBuf>,
    pub echo_cancel: Option<bool>,
    pub stay_reachable: Option<bool>,
}

/// The file's content for `s`.
pub fn encode(s: &Settings) -> Vec<u8> {
    let video = match &s.video {
        VideoChoice::Camera(dev) => json!({"camera": dev}),
        VideoChoice::TestPicture => json!("test"),
        VideoChoice::Nothing => json!("none"),
    };
    let v = json!({
        "version": 1,
        "mic": s.mic,
        "speaker": s.speaker,
        "video": video,
        "files_dir": s.files_dir.to_str(),
        "echo_cancel": s.echo_cancel,
        "stay_reachable": s.stay_reachable,
    });
    serde_json::to_vec_pretty(&v).unwrap_or_default()
}

/// Reads a saved file; `None` if it is not JSON at all.
pub fn decode(bytes: &[u8]) -> Option<Saved> {
    let v: Value = serde_json::from_slice(bytes).ok()?;
    let device = |key: &str| match v.get(key) {
        Some(Value::Null) => Some(None),
        Some(Value::String(s)) => Some(Some(s.clone())),
        _ => None,
    };
    let video = match v.get("video") {
        Some(Value::String(s)) if s == "test" => Some(VideoChoice::TestPicture),
        Some(Value::String(s)) if s == "none" => Some(VideoChoice::Nothing),
        Some(Value::Object(o)) => o
            .get("camera")
            .and_then(Value::as_str)
            .map(|d| VideoChoice::Camera(d.to_string())),
        _ => None,
    };
    Some(Saved {
        mic: device("mic"),
        speaker: device("speaker"),
        video,
        files_dir: v
            .get("files_dir")
            .and_then(Value::as_str)
            .filter(|d| !d.is_empty())
            .map(PathBuf::from),
        echo_cancel: v.get("echo_cancel").and_then(Value::as_bool),
        stay_reachable: v.get("stay_reachable").and_then(Value::as_bool),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Settings {
        Settings {
            mic: Some("alsa_input.usb-Headset".into()),
            speaker: None,
            video: VideoChoice::Camera("/dev/video2".into()),
            files_dir: "/home/a/Incoming".into(),
            echo_cancel: false,
            stay_reachable: true,
        }
    }

    #[test]
    fn what_was_chosen_comes_back_as_it_was() {
        let s = settings();
        let back = decode(&encode(&s)).expect("JSON");
        assert_eq!(back.mic, Some(s.mic.clone()));
        assert_eq!(back.speaker, Some(None));
        assert_eq!(back.video, Some(s.video.clone()));
        assert_eq!(back.files_dir, Some(s.files_dir.clone()));
        assert_eq!(back.echo_cancel, Some(false));
        assert_eq!(back.stay_reachable, Some(true));
        for video in [VideoChoice::TestPicture, VideoChoice::Nothing] {
            let s = Settings {
                video,
                ..settings()
            };
            assert_eq!(decode(&encode(&s)).unwrap().video, Some(s.video));
        }
    }

    #[test]
    fn a_damaged_or_foreign_file_loses_only_what_it_lacks() {
        assert_eq!(decode(b"not json"), None);
        let odd = decode(br#"{"mic": 7, "speaker": "hdmi", "video": {"camera": 3}}"#).unwrap();
        assert_eq!(
            odd,
            Saved {
                speaker: Some(Some("hdmi".into())),
                ..Saved::default()
            }
        );
    }
}
