//! Drawing. Each function reads the model and pushes what the person did as [`Action`]s;
//! nothing here changes state directly.

mod call;
mod home;
mod settings;
mod start;

use eframe::egui::{self, Color32, RichText};

use crate::app::App;
use crate::model::{Action, NoticeKind, Stage};
use crate::words;

/// Text sizes: headings and the security code must read at a glance.
pub const HEADING: f32 = 22.0;
pub const BODY: f32 = 15.0;

pub fn draw(app: &mut App, ui: &mut egui::Ui, actions: &mut Vec<Action>) {
    egui::Panel::top("top").show(ui, |ui| {
        ui.horizontal(|ui| {
            ui.label(RichText::new(words::APP).size(HEADING).strong());
            if app.model.stage == Stage::Ready {
                ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
                    let label = if app.fields.settings_open {
                        format!("{} ^", words::SETTINGS)
                    } else {
                        words::SETTINGS.to_string()
                    };
                    if ui.button(label).clicked() {
                        app.fields.settings_open = !app.fields.settings_open;
                    }
                });
            }
        });
        notices(app, ui, actions);
    });
    if app.fields.settings_open && app.model.stage == Stage::Ready {
        egui::Panel::bottom("settings").show(ui, |ui| settings::draw(app, ui, actions));
    }
    match app.model.stage {
        Stage::Starting => {
            egui::CentralPanel::default().show(ui, |ui| {
                ui.spinner();
            });
        }
        Stage::FirstRun => start::first_run(app, ui, actions),
        Stage::Locked => start::unlock(app, ui, actions),
        Stage::Ready if app.model.call.is_some() => call::draw(app, ui, actions),
        Stage::Ready => home::draw(app, ui, actions),
    }
}

fn notices(app: &App, ui: &mut egui::Ui, actions: &mut Vec<Action>) {
    for (i, n) in app.model.notices.iter().enumerate() {
        let (fill, text) = match n.kind {
            NoticeKind::Error => (Color32::from_rgb(120, 30, 30), Color32::WHITE),
            NoticeKind::Info => (Color32::from_rgb(30, 70, 110), Color32::WHITE),
        };
        egui::Frame::new()
            .fill(fill)
            .inner_margin(8.0)
            .corner_radius(4.0)
            .show(ui, |ui| {
                ui.horizontal(|ui| {
                    if ui.button(words::DISMISS).clicked() {
                        actions.push(Action::DismissNotice(i));
                    }
                    ui.add(egui::Label::new(RichText::new(&n.text).color(text).size(BODY)).wrap());
                });
            });
        ui.add_space(4.0);
    }
}
