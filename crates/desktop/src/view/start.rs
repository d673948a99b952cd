//! First run (make the identity) and unlocking a protected one.

use eframe::egui::{self, RichText};

use super::{BODY, HEADING};
use crate::app::App;
use crate::model::{Action, Passphrase};
use crate::words;
use zeroize::Zeroize;

pub fn first_run(app: &mut App, ui: &mut egui::Ui, actions: &mut Vec<Action>) {
    egui::CentralPanel::default().show(ui, |ui| {
        ui.set_max_width(ui.available_width().min(640.0));
        ui.add_space(16.0);
        ui.label(RichText::new(words::WELCOME).size(HEADING));
        ui.add_space(12.0);
        ui.label(RichText::new(words::FIRST_RUN).size(BODY));
        ui.add_space(12.0);
        ui.label(RichText::new(words::PASSPHRASE_HINT).size(BODY));
        let f = &mut app.fields;
        egui::Grid::new("pass").num_columns(2).show(ui, |ui| {
            ui.label(words::PASSPHRASE);
            let first = ui.add(egui::TextEdit::singleline(&mut *f.pass1).password(true));
            super::name(ui, &first, words::PASSPHRASE);
            if f.pass1.is_empty() && f.pass2.is_empty() && !app.model.busy {
                first.request_focus();
            }
            ui.end_row();
            ui.label(words::REPEAT);
            let second = ui.add(egui::TextEdit::singleline(&mut *f.pass2).password(true));
            super::name(ui, &second, words::REPEAT);
            ui.end_row();
        });
        let differ = f.pass1 != f.pass2;
        if differ && !f.pass2.is_empty() {
            ui.label("The two passphrases differ.");
        }
        ui.add_space(8.0);
        ui.horizontal(|ui| {
            let go = ui.add_enabled(
                !differ && !app.model.busy,
                egui::Button::new(RichText::new(words::CREATE).size(BODY)),
            );
            if app.model.busy {
                ui.spinner();
            }
            if go.clicked() {
                let p = std::mem::take(&mut *f.pass1);
                f.pass2.zeroize();
                actions.push(Action::CreateIdentity {
                    passphrase: (!p.is_empty()).then(|| Passphrase::new(p)),
                });
            }
        });
    });
}

pub fn unlock(app: &mut App, ui: &mut egui::Ui, actions: &mut Vec<Action>) {
    egui::CentralPanel::default().show(ui, |ui| {
        ui.add_space(16.0);
        ui.label(RichText::new(words::UNLOCK_TITLE).size(HEADING));
        ui.add_space(8.0);
        let f = &mut app.fields;
        let field = ui.add(
            egui::TextEdit::singleline(&mut *f.unlock)
                .password(true)
                .hint_text(words::PASSPHRASE),
        );
        super::name(ui, &field, words::PASSPHRASE);
        if !app.model.busy && !field.has_focus() && f.unlock.is_empty() {
            field.request_focus();
        }
        let enter = field.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
        ui.horizontal(|ui| {
            let go = ui.add_enabled(!app.model.busy, egui::Button::new(words::UNLOCK));
            if app.model.busy {
                ui.spinner();
            }
            if (go.clicked() || enter) && !f.unlock.is_empty() && !app.model.busy {
                actions.push(Action::Unlock {
                    passphrase: Passphrase::new(std::mem::take(&mut *f.unlock)),
                });
            }
        });
    });
}
