//! The home screen: contacts on the left, who we are (peer ID, ticket, QR code) on the right.

use eframe::egui::{self, RichText};

use super::{BODY, HEADING};
use crate::app::App;
use crate::model::Action;
use crate::pictures;
use crate::words;

pub fn draw(app: &mut App, ui: &mut egui::Ui, actions: &mut Vec<Action>) {
    // Both sides scroll: at 2x on a small screen neither fits.
    let width = (ui.available_width() * 0.45).min(360.0);
    egui::Panel::left("contacts")
        .resizable(true)
        .default_size(width)
        .show(ui, |ui| {
            egui::ScrollArea::vertical()
                .id_salt("contacts")
                .show(ui, |ui| contacts(app, ui, actions))
        });
    egui::CentralPanel::default().show(ui, |ui| {
        egui::ScrollArea::vertical()
            .id_salt("me")
            .show(ui, |ui| me(app, ui, actions))
    });
}

fn contacts(app: &mut App, ui: &mut egui::Ui, actions: &mut Vec<Action>) {
    missed(app, ui, actions);
    ui.label(RichText::new(words::CONTACTS).size(HEADING));
    if app.model.contacts.is_empty() {
        ui.label(words::NO_CONTACTS);
    }
    for c in &app.model.contacts {
        ui.group(|ui| {
            let renaming = app
                .fields
                .renaming
                .as_ref()
                .is_some_and(|(p, _)| *p == c.peer_id);
            if renaming {
                rename(&mut app.fields.renaming, ui, actions);
            }
            ui.horizontal(|ui| {
                ui.label(RichText::new(&c.name).size(BODY).strong());
                let (badge, color) = if c.verified {
                    (words::VERIFIED, super::good(ui))
                } else {
                    (words::UNVERIFIED, super::caution(ui))
                };
                ui.label(RichText::new(badge).color(color));
            });
            ui.label(
                RichText::new(words::short_peer(&c.peer_id))
                    .monospace()
                    .weak(),
            );
            ui.horizontal(|ui| {
                if ui.button(words::CALL_AUDIO).clicked() {
                    actions.push(Action::Call {
                        peer_id: c.peer_id.clone(),
                        video: false,
                    });
                }
                if ui.button(words::CALL_VIDEO).clicked() {
                    actions.push(Action::Call {
                        peer_id: c.peer_id.clone(),
                        video: true,
                    });
                }
                if ui.small_button(words::RENAME).clicked() {
                    app.fields.renaming = Some((c.peer_id.clone(), c.name.clone()));
                }
                if ui.small_button(words::REMOVE).clicked() {
                    app.fields.removing = Some(c.peer_id.clone());
                }
            });
            // Removing forgets their ticket and verification: asked once more.
            if app.fields.removing.as_deref() == Some(c.peer_id.as_str()) {
                ui.horizontal(|ui| {
                    ui.label(format!("Remove {}?", c.name));
                    if ui.button(words::REMOVE).clicked() {
                        actions.push(Action::RemoveContact {
                            peer_id: c.peer_id.clone(),
                        });
                        app.fields.removing = None;
                    }
                    if ui.button(words::KEEP).clicked() {
                        app.fields.removing = None;
                    }
                });
            }
        });
    }
    ui.separator();
    ui.label(RichText::new(words::ADD_CONTACT).strong());
    let f = &mut app.fields;
    let ticket = ui.add(egui::TextEdit::singleline(&mut f.ticket).hint_text(words::TICKET_FIELD));
    super::name(ui, &ticket, words::TICKET_FIELD);
    ui.horizontal(|ui| {
        let name = ui.add(egui::TextEdit::singleline(&mut f.name).hint_text(words::NAME_FIELD));
        super::name(ui, &name, words::NAME_FIELD);
        let enter = name.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
        let ready = !f.ticket.trim().is_empty() && !f.name.trim().is_empty();
        if (ui
            .add_enabled(ready, egui::Button::new(words::ADD))
            .clicked()
            || enter)
            && ready
        {
            actions.push(Action::AddContact {
                ticket: std::mem::take(&mut f.ticket),
                name: std::mem::take(&mut f.name),
            });
        }
    });
}

fn me(app: &mut App, ui: &mut egui::Ui, actions: &mut Vec<Action>) {
    let Some(me) = app.model.me.clone() else {
        return;
    };
    ui.label(RichText::new(words::YOUR_ID).size(HEADING));
    ui.add(egui::Label::new(RichText::new(&me.peer_id).monospace().size(BODY)).selectable(true));
    ui.add_space(12.0);
    ui.label(RichText::new(words::YOUR_TICKET).size(BODY));
    ui.add(
        egui::Label::new(RichText::new(&me.ticket).monospace())
            .selectable(true)
            .wrap(),
    );
    ui.horizontal(|ui| {
        if ui.button(words::COPY).clicked() {
            ui.ctx().copy_text(me.ticket.clone());
            app.fields.copied = Some(std::time::Instant::now());
        }
        if !app.fields.renewing {
            if ui.button(words::NEW_TICKET).clicked() {
                app.fields.renewing = true;
            }
        } else {
            ui.label(words::NEW_TICKET_ASK);
            if ui.button(words::NEW_TICKET_YES).clicked() {
                app.fields.renewing = false;
                actions.push(Action::NewTicket);
            }
            if ui.button(words::NEW_TICKET_NO).clicked() {
                app.fields.renewing = false;
            }
        }
        if app
            .fields
            .copied
            .is_some_and(|t| t.elapsed() < std::time::Duration::from_secs(3))
        {
            ui.label(words::COPIED);
        }
    });
    if let Some(reach) = &app.model.reach {
        ui.label(RichText::new(reach).weak());
    }
    if let Some(online) = words::online(&app.model.online) {
        ui.label(RichText::new(online).weak());
    }
    ui.add_space(8.0);
    if app
        .textures
        .qr
        .as_ref()
        .is_none_or(|(t, _)| *t != me.ticket)
    {
        app.textures.qr = pictures::qr_image(&me.ticket.to_uppercase()).map(|img| {
            let tex = ui
                .ctx()
                .load_texture("qr", img, egui::TextureOptions::NEAREST);
            (me.ticket.clone(), tex)
        });
    }
    if let Some((_, tex)) = &app.textures.qr {
        // Whole pixels per module keep the code sharp for a phone's camera.
        let modules = tex.size()[0] as f32;
        let side =
            (ui.available_width().min(ui.available_height()) - 8.0).clamp(modules, 4.0 * modules);
        let side = (side / modules).floor() * modules;
        ui.image(egui::load::SizedTexture::new(tex.id(), [side, side]));
    }
}

/// The name field of a contact being renamed: Enter or Save keeps it, Cancel drops it.
fn rename(state: &mut Option<(String, String)>, ui: &mut egui::Ui, actions: &mut Vec<Action>) {
    let Some((peer_id, name)) = state else {
        return;
    };
    let mut done = false;
    ui.horizontal(|ui| {
        let field = ui.add(egui::TextEdit::singleline(name).desired_width(160.0));
        super::name(ui, &field, words::NAME_FIELD);
        let enter = field.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
        if ui.button(words::SAVE).clicked() || enter {
            actions.push(Action::RenameContact {
                peer_id: peer_id.clone(),
                name: name.clone(),
            });
            done = true;
        }
        if ui.button(words::CANCEL).clicked() {
            done = true;
        }
    });
    if done {
        *state = None;
    }
}

/// Calls that rang while nobody answered, since the app started.
fn missed(app: &App, ui: &mut egui::Ui, actions: &mut Vec<Action>) {
    if app.model.missed.is_empty() {
        return;
    }
    egui::Frame::new()
        .fill(ui.visuals().extreme_bg_color)
        .inner_margin(8.0)
        .corner_radius(6.0)
        .show(ui, |ui| {
            ui.add(
                egui::Label::new(
                    RichText::new(words::MISSED_CALLS)
                        .strong()
                        .color(super::caution(ui)),
                )
                .wrap(),
            );
            for m in app.model.missed.iter().rev() {
                ui.horizontal_wrapped(|ui| {
                    ui.label(format!("{} {}", m.at, m.who));
                    if ui.small_button(words::CALL_BACK).clicked() {
                        actions.push(Action::Call {
                            peer_id: m.peer_id.clone(),
                            video: false,
                        });
                    }
                });
            }
            if ui.small_button(words::SEEN).clicked() {
                actions.push(Action::DismissMissed);
            }
        });
    ui.add_space(6.0);
}
