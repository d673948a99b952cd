//! `extrasafe devices`

use extrasafe_devices::DeviceInfo;
use serde_json::json;

use crate::exit::{Failure, OTHER};
use crate::output::Output;

fn entries(devs: &[DeviceInfo]) -> (String, Vec<serde_json::Value>) {
    let mut human = String::new();
    let mut values = Vec::new();
    for d in devs {
        human.push_str(&format!(
            "  {} {}{}{}\n",
            if d.is_default { "*" } else { " " },
            d.name,
            if d.description.is_empty() {
                String::new()
            } else {
                format!("  ({})", d.description)
            },
            if d.monitor {
                "  [records a speaker]"
            } else {
                ""
            },
        ));
        values.push(json!({"name": d.name, "description": d.description,
                           "default": d.is_default, "monitor": d.monitor}));
    }
    if devs.is_empty() {
        human.push_str("  (none)\n");
    }
    (human, values)
}

pub async fn run(out: Output) -> Result<i32, Failure> {
    let failure = |e| {
        Failure::new(
            OTHER,
            format!(
                "Cannot list sound devices: {e}. Start PulseAudio or PipeWire (with \
                 pipewire-pulse), or use WAV files with --audio-in/--audio-out."
            ),
        )
    };
    let (_, list) = crate::audioplan::connect_and_list()
        .await
        .map_err(failure)?;
    let (mics, mics_json) = entries(&list.mics);
    let (speakers, speakers_json) = entries(&list.speakers);
    out.emit(
        format!(
            "Microphones (--mic NAME):\n{mics}Speakers (--speaker NAME):\n{speakers}* marks the default. A unique part of a name or description also works."
        ),
        json!({"event": "devices", "mics": mics_json, "speakers": speakers_json}),
    );
    Ok(0)
}
