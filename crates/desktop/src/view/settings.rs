//! Devices (microphone, speaker, video source) and where received files go.

use eframe::egui;

use crate::app::App;
use crate::model::{Action, VideoChoice};
use crate::words;

pub fn draw(app: &mut App, ui: &mut egui::Ui, actions: &mut Vec<Action>) {
    let d = &app.model.devices;
    let s = &app.model.settings;
    ui.heading(words::SETTINGS);
    if let Some(p) = &d.sound_problem {
        ui.label(p);
    }
    egui::Grid::new("settings").num_columns(2).show(ui, |ui| {
        ui.label(words::MIC);
        device_box(ui, "mic", &d.mics, &s.mic, |m| {
            actions.push(Action::SetMic(m))
        });
        ui.end_row();
        ui.label(words::SPEAKER);
        device_box(ui, "speaker", &d.speakers, &s.speaker, |m| {
            actions.push(Action::SetSpeaker(m))
        });
        ui.end_row();
        ui.label(words::ECHO_CANCEL);
        let mut on = s.echo_cancel;
        if ui.checkbox(&mut on, words::ECHO_CANCEL_HINT).changed() {
            actions.push(Action::SetEchoCancel(on));
        }
        ui.end_row();
        ui.label(words::STAY_REACHABLE);
        let mut stay = s.stay_reachable;
        if ui.checkbox(&mut stay, words::STAY_REACHABLE_HINT).changed() {
            actions.push(Action::SetStayReachable(stay));
        }
        ui.end_row();
        ui.label(words::VIDEO_SOURCE);
        let label = |v: &VideoChoice| match v {
            VideoChoice::Camera(dev) => dev.clone(),
            VideoChoice::TestPicture => words::TEST_PICTURE.to_string(),
            VideoChoice::Nothing => words::NO_VIDEO.to_string(),
        };
        egui::ComboBox::from_id_salt("video")
            .selected_text(label(&s.video))
            .show_ui(ui, |ui| {
                let mut choices: Vec<VideoChoice> =
                    d.cameras.iter().cloned().map(VideoChoice::Camera).collect();
                choices.push(VideoChoice::TestPicture);
                choices.push(VideoChoice::Nothing);
                for c in choices {
                    if ui.selectable_label(s.video == c, label(&c)).clicked() {
                        actions.push(Action::SetVideo(c));
                    }
                }
            });
        ui.end_row();
        ui.label(words::FILES_DIR);
        let mut dir = s.files_dir.display().to_string();
        if ui.text_edit_singleline(&mut dir).changed() {
            actions.push(Action::SetFilesDir(dir.into()));
        }
        ui.end_row();
    });
}

fn device_box(
    ui: &mut egui::Ui,
    id: &str,
    list: &[(String, String)],
    chosen: &Option<String>,
    mut pick: impl FnMut(Option<String>),
) {
    let name_of = |n: &Option<String>| match n {
        None => words::SYSTEM_DEFAULT.to_string(),
        Some(n) => list
            .iter()
            .find(|(name, _)| name == n)
            .map_or(n.clone(), |(name, desc)| {
                if desc.is_empty() {
                    name.clone()
                } else {
                    desc.clone()
                }
            }),
    };
    egui::ComboBox::from_id_salt(id)
        .selected_text(name_of(chosen))
        .width(320.0)
        .show_ui(ui, |ui| {
            if ui
                .selectable_label(chosen.is_none(), words::SYSTEM_DEFAULT)
                .clicked()
            {
                pick(None);
            }
            for (name, _) in list {
                let this = Some(name.clone());
                if ui
                    .selectable_label(*chosen == this, name_of(&this))
                    .clicked()
                {
                    pick(this);
                }
            }
        });
}
