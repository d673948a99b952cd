//! A call: answering, the picture, the controls, the security code, chat and files.

use eframe::egui::{self, Color32, RichText};

use super::{BODY, HEADING};
use crate::app::App;
use crate::model::{Action, CallView, Phase, TransferState};
use crate::pictures;
use crate::words;

pub fn draw(app: &mut App, ui: &mut egui::Ui, actions: &mut Vec<Action>) {
    // Taken out while drawing (and put back) rather than copied each frame: a long chat
    // would be copied thirty times a second.
    let Some(call) = app.model.call.take() else {
        return;
    };
    draw_call(app, &call, ui, actions);
    app.model.call = Some(call);
}

fn draw_call(app: &mut App, call: &CallView, ui: &mut egui::Ui, actions: &mut Vec<Action>) {
    let controls = call.controls();
    if controls.chat {
        // A fixed width: fields sized to the panel would otherwise widen it frame by frame.
        egui::Panel::right("side")
            .resizable(false)
            .exact_size(360.0)
            .show(ui, |ui| side(app, call, ui, actions));
    }
    egui::CentralPanel::default().show(ui, |ui| {
        ui.label(RichText::new(call.title()).size(HEADING).strong());
        // The main button of each phase takes the keyboard focus once, so Enter answers.
        let key = format!("{}:{:?}", call.peer_id, std::mem::discriminant(&call.phase));
        let fresh = app.fields.focused_for.as_deref() != Some(key.as_str());
        match &call.phase {
            Phase::Dialling { step } => {
                ui.horizontal(|ui| {
                    ui.spinner();
                    ui.label(RichText::new(step).size(BODY));
                });
                cancel(ui, fresh, actions);
            }
            Phase::Ringing => {
                ui.horizontal(|ui| {
                    ui.spinner();
                    ui.label(RichText::new("Their device is ringing.").size(BODY));
                });
                cancel(ui, fresh, actions);
            }
            Phase::Incoming => incoming(call, ui, fresh, actions),
            Phase::Connected => connected(app, call, ui, actions),
            Phase::Ended { why, failed } => {
                let color = if *failed {
                    Color32::from_rgb(230, 120, 110)
                } else {
                    ui.visuals().text_color()
                };
                ui.add(egui::Label::new(RichText::new(why).size(BODY).color(color)).wrap());
                ui.label(words::NOTHING_STORED);
                let b = ui.button(RichText::new(words::CLOSE).size(BODY));
                if fresh {
                    b.request_focus();
                }
                if b.clicked() {
                    actions.push(Action::CloseCall);
                }
            }
        }
        app.fields.focused_for = Some(key);
    });
}

fn cancel(ui: &mut egui::Ui, fresh: bool, actions: &mut Vec<Action>) {
    let b = ui.button(RichText::new(words::CANCEL).size(BODY));
    if fresh {
        b.request_focus();
    }
    if b.clicked() {
        actions.push(Action::HangUp);
    }
}

fn incoming(call: &CallView, ui: &mut egui::Ui, fresh: bool, actions: &mut Vec<Action>) {
    if call.contact.is_none() {
        ui.label(RichText::new(format!("Peer ID {}", call.peer_id)).monospace());
        ui.label("Answer only if you expect a call from someone new; you can compare the security code once connected.");
    } else if !call.verified {
        ui.label("You have not compared security codes with them yet.");
    }
    ui.add_space(12.0);
    ui.horizontal(|ui| {
        let big = |t: &str| {
            egui::Button::new(RichText::new(t).size(HEADING)).min_size([160.0, 48.0].into())
        };
        let accept = ui.add(big(words::ACCEPT_AUDIO).fill(Color32::from_rgb(40, 120, 60)));
        if fresh {
            accept.request_focus();
        }
        if accept.clicked() {
            actions.push(Action::Accept { video: false });
        }
        if ui
            .add(big(words::ACCEPT_VIDEO).fill(Color32::from_rgb(40, 100, 120)))
            .clicked()
        {
            actions.push(Action::Accept { video: true });
        }
        if ui
            .add(big(words::DECLINE).fill(Color32::from_rgb(140, 40, 40)))
            .clicked()
        {
            actions.push(Action::Decline);
        }
    });
}

fn connected(app: &mut App, call: &CallView, ui: &mut egui::Ui, actions: &mut Vec<Action>) {
    if call.reconnecting {
        ui.horizontal(|ui| {
            ui.spinner();
            ui.add(egui::Label::new(RichText::new(words::RECONNECTING).size(BODY)).wrap());
        });
    }
    sas(app, call, ui, actions);
    ui.add_space(4.0);
    controls(call, ui, actions);
    if let Some(s) = &call.stats {
        let video = match (s.video_in, s.video_out) {
            (None, None) => String::new(),
            (i, o) => {
                let f =
                    |v: Option<(u32, u32)>| v.map_or("none".into(), |(w, h)| format!("{w}x{h}"));
                format!(" · video in {} out {}", f(i), f(o))
            }
        };
        let echo = match s.echo {
            None => " · echo cancellation off".to_string(),
            Some(e) if e.no_echo => " · no echo heard".to_string(),
            Some(e) => match (e.delay_ms, e.erle_db) {
                (Some(d), Some(erle)) if erle >= 3.0 => {
                    format!(" · echo cancelled ({d} ms, {erle:.0} dB)")
                }
                _ => " · echo cancellation on".to_string(),
            },
        };
        let voice = match s.copies {
            _ if s.voice_kbps == 0 => String::new(),
            1 => format!(" (voice {} kb/s, 1 copy)", s.voice_kbps),
            n => format!(" (voice {} kb/s, {n} copies)", s.voice_kbps),
        };
        ui.label(
            RichText::new(format!(
                "Direct to {} · round trip {:.0} ms · loss {:.1} % · sending {:.0} kb/s{voice} · receiving {:.0} kb/s{video}{echo}",
                s.remote, s.rtt_ms, s.loss_percent, s.send_kbps, s.recv_kbps
            ))
            .small()
            .weak(),
        );
    }
    video(app, call, ui);
}

/// The security code, large, with the button that records the comparison.
fn sas(app: &mut App, call: &CallView, ui: &mut egui::Ui, actions: &mut Vec<Action>) {
    let Some(code) = &call.sas else {
        return;
    };
    egui::Frame::new()
        .fill(ui.visuals().extreme_bg_color)
        .inner_margin(8.0)
        .corner_radius(6.0)
        .show(ui, |ui| {
            ui.horizontal_wrapped(|ui| {
                ui.label(RichText::new(code).monospace().size(34.0).strong());
                ui.vertical(|ui| {
                    if call.verified {
                        ui.label(
                            RichText::new(words::SAS_DONE).color(Color32::from_rgb(60, 160, 80)),
                        );
                    } else {
                        ui.label(words::SAS_TITLE);
                        ui.label(RichText::new(words::SAS_MISMATCH).weak());
                        if call.contact.is_some() {
                            if ui.button(words::SAS_COMPARED).clicked() {
                                actions.push(Action::MarkVerified);
                            }
                        } else {
                            ui.horizontal(|ui| {
                                ui.add(
                                    egui::TextEdit::singleline(&mut app.fields.caller_name)
                                        .hint_text(words::NAME_FIELD)
                                        .desired_width(140.0),
                                );
                                let ok = !app.fields.caller_name.trim().is_empty();
                                if ui
                                    .add_enabled(ok, egui::Button::new(words::SAVE_CALLER))
                                    .clicked()
                                {
                                    actions.push(Action::SaveCaller {
                                        name: std::mem::take(&mut app.fields.caller_name),
                                    });
                                }
                            });
                        }
                    }
                });
            });
        });
}

fn controls(call: &CallView, ui: &mut egui::Ui, actions: &mut Vec<Action>) {
    ui.horizontal(|ui| {
        let size = |t: &str| RichText::new(t).size(BODY);
        if ui
            .button(size(if call.muted {
                words::UNMUTE
            } else {
                words::MUTE
            }))
            .clicked()
        {
            actions.push(Action::Mute(!call.muted));
        }
        if ui
            .button(size(if call.camera_on {
                words::CAMERA_OFF
            } else {
                words::CAMERA_ON
            }))
            .clicked()
        {
            actions.push(Action::Camera(!call.camera_on));
        }
        if ui
            .button(size(if call.sharing {
                words::STOP_SHARE
            } else {
                words::SHARE
            }))
            .clicked()
        {
            actions.push(Action::Share(!call.sharing));
        }
        let hang = egui::Button::new(size(words::HANG_UP)).fill(Color32::from_rgb(140, 40, 40));
        if ui.add(hang).clicked() {
            actions.push(Action::HangUp);
        }
    });
}

/// Their picture, as large as the panel allows, with ours small in its corner.
fn video(app: &mut App, call: &CallView, ui: &mut egui::Ui) {
    let ppp = ui.ctx().pixels_per_point();
    let avail = ui.available_size();
    let max_px = (avail.x * ppp).clamp(64.0, 1920.0) as u32;
    let pictures = app.pictures().clone();
    refresh(
        ui.ctx(),
        &pictures.remote,
        &mut app.textures.remote,
        "remote",
        max_px,
    );
    refresh(
        ui.ctx(),
        &pictures.preview,
        &mut app.textures.preview,
        "preview",
        320,
    );
    let Some((_, tex)) = &app.textures.remote else {
        let text = if call
            .stats
            .as_ref()
            .is_some_and(|s| s.video_in.is_none() && s.frames_shown == 0)
        {
            words::NO_REMOTE_VIDEO
        } else {
            words::WAITING_VIDEO
        };
        ui.label(RichText::new(text).weak());
        if let Some((_, p)) = &app.textures.preview {
            let s = p.size_vec2();
            ui.image(egui::load::SizedTexture::new(p.id(), s * (200.0 / s.x)));
        }
        return;
    };
    let size = tex.size_vec2();
    let scale = (avail.x / size.x).min((avail.y - 4.0) / size.y).max(0.05);
    let resp = ui.image(egui::load::SizedTexture::new(tex.id(), size * scale));
    if let Some((_, p)) = &app.textures.preview {
        let ps = p.size_vec2();
        let w = (resp.rect.width() / 4.0).max(80.0);
        let h = w * ps.y / ps.x;
        let rect = egui::Rect::from_min_size(
            resp.rect.right_bottom() - egui::vec2(w + 8.0, h + 8.0),
            egui::vec2(w, h),
        );
        let painter = ui.painter_at(resp.rect);
        painter.rect_filled(rect.expand(2.0), 2.0, Color32::WHITE);
        painter.image(
            p.id(),
            rect,
            egui::Rect::from_min_max(egui::pos2(0.0, 0.0), egui::pos2(1.0, 1.0)),
            Color32::WHITE,
        );
    }
}

fn refresh(
    ctx: &egui::Context,
    slot: &extrasafe_net::video_media::LatestFrame,
    tex: &mut Option<(u64, egui::TextureHandle)>,
    name: &str,
    max_px: u32,
) {
    // A repaint for anything else must not copy a whole picture it already shows.
    let held = slot.index();
    if held.is_some() && tex.as_ref().map(|(i, _)| *i) == held {
        return;
    }
    match slot.get() {
        None => *tex = None,
        Some((frame, index)) => {
            let img = pictures::frame_to_image(&frame, max_px);
            match tex {
                Some((i, t)) => {
                    t.set(img, egui::TextureOptions::LINEAR);
                    *i = index;
                }
                None => {
                    *tex = Some((
                        index,
                        ctx.load_texture(name, img, egui::TextureOptions::LINEAR),
                    ))
                }
            }
        }
    }
}

fn side(app: &mut App, call: &CallView, ui: &mut egui::Ui, actions: &mut Vec<Action>) {
    ui.label(RichText::new(words::CHAT).size(HEADING));
    let chat_height = (ui.available_height() * 0.45).max(120.0);
    egui::ScrollArea::vertical()
        .id_salt("chat")
        .max_height(chat_height)
        .stick_to_bottom(true)
        .show(ui, |ui| {
            for l in &call.chat {
                let who = if l.mine {
                    "You".to_string()
                } else {
                    call.who()
                };
                ui.add(
                    egui::Label::new(
                        RichText::new(format!("{} {}: {}", l.at, who, l.text)).size(BODY),
                    )
                    .wrap()
                    .selectable(true),
                );
            }
        });
    ui.horizontal(|ui| {
        let field = ui.add(
            egui::TextEdit::singleline(&mut app.fields.chat)
                .hint_text(words::CHAT_HINT)
                .desired_width(ui.available_width() - 60.0),
        );
        let enter = field.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
        if (ui.button(words::SEND).clicked() || enter) && !app.fields.chat.trim().is_empty() {
            actions.push(Action::Chat(std::mem::take(&mut app.fields.chat)));
            field.request_focus();
        }
    });
    ui.separator();
    ui.label(RichText::new(words::SEND_FILE).size(BODY).strong());
    ui.label(RichText::new(words::DROP_HINT).weak());
    ui.horizontal(|ui| {
        ui.add(
            egui::TextEdit::singleline(&mut app.fields.file)
                .hint_text(words::FILE_PATH)
                .desired_width(ui.available_width() - 60.0),
        );
        if ui.button(words::SEND).clicked() && !app.fields.file.trim().is_empty() {
            let path = std::mem::take(&mut app.fields.file);
            actions.push(Action::SendFiles(vec![path.trim().into()]));
        }
    });
    for o in &call.offers {
        egui::Frame::new()
            .fill(ui.visuals().extreme_bg_color)
            .inner_margin(6.0)
            .show(ui, |ui| {
                ui.label(
                    RichText::new(format!(
                        "{} {} {}:",
                        call.who(),
                        words::OFFER,
                        words::size(o.total)
                    ))
                    .strong(),
                );
                for (name, size) in o.files.iter().take(8) {
                    ui.label(format!("{name} ({})", words::size(*size)));
                }
                if o.files.len() > 8 {
                    ui.label(format!("and {} more", o.files.len() - 8));
                }
                ui.horizontal(|ui| {
                    if ui.button(words::ACCEPT_AUDIO).clicked() {
                        actions.push(Action::AcceptOffer(o.id));
                    }
                    if ui.button(words::DECLINE).clicked() {
                        actions.push(Action::DeclineOffer(o.id));
                    }
                });
            });
    }
    for t in &call.transfers {
        let dir = if t.outgoing { "To them" } else { "From them" };
        ui.label(format!("{dir}: {}", t.label));
        match &t.state {
            TransferState::Running => {
                let frac = if t.total == 0 {
                    0.0
                } else {
                    t.bytes as f32 / t.total as f32
                };
                ui.horizontal(|ui| {
                    ui.add(
                        egui::ProgressBar::new(frac)
                            .desired_width(ui.available_width() - 60.0)
                            .text(words::transfer_progress(
                                t.bytes,
                                t.total,
                                t.bytes_per_sec,
                                t.eta_secs,
                            )),
                    );
                    if ui.small_button(words::STOP).clicked() {
                        actions.push(Action::CancelTransfer {
                            id: t.id,
                            outgoing: t.outgoing,
                        });
                    }
                });
            }
            TransferState::Done { folder } => {
                ui.horizontal(|ui| {
                    ui.label(
                        RichText::new(format!("Done, {}.", words::size(t.total)))
                            .color(Color32::from_rgb(60, 160, 80)),
                    );
                    if let Some(dir) = folder {
                        if ui.button(words::SHOW_FOLDER).clicked() {
                            actions.push(Action::ShowFolder(dir.clone()));
                        }
                    }
                });
            }
            TransferState::Stopped { why } => {
                ui.label(RichText::new(why).color(Color32::from_rgb(230, 120, 110)));
            }
        }
    }
}
