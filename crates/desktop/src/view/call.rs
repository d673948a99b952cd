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
    let live = call.phase == Phase::Connected;
    if !live && app.fields.fullscreen {
        set_fullscreen(app, ui.ctx(), false);
    }
    if live {
        keys(app, ui.ctx());
    }
    if live && app.fields.fullscreen {
        return fullscreen(app, call, ui, actions);
    }
    // Chat and files sit beside the picture when there is room for both, and take its place
    // (behind a button) on a narrow window or at a large zoom.
    let wide = ui.ctx().content_rect().width() >= WIDE;
    let side_open = call.controls().chat && app.fields.side_open.unwrap_or(wide);
    if side_open && wide {
        // A fixed width: fields sized to the panel would otherwise widen it frame by frame.
        egui::Panel::right("side")
            .resizable(false)
            .exact_size(SIDE)
            .show(ui, |ui| side(app, call, ui, actions));
    }
    egui::CentralPanel::default().show(ui, |ui| {
        ui.add(egui::Label::new(RichText::new(call.title()).size(HEADING).strong()).wrap());
        // The main button of each phase takes the keyboard focus once, so Enter answers.
        let key = format!("{}:{:?}", call.peer_id, std::mem::discriminant(&call.phase));
        let fresh = app.fields.focused_for.as_deref() != Some(key.as_str());
        match &call.phase {
            Phase::Dialling { step } => {
                ui.horizontal_wrapped(|ui| {
                    ui.spinner();
                    ui.add(egui::Label::new(RichText::new(step).size(BODY)).wrap());
                });
                cancel(ui, fresh, actions);
            }
            Phase::Ringing => {
                ui.horizontal_wrapped(|ui| {
                    ui.spinner();
                    ui.label(RichText::new("Their device is ringing.").size(BODY));
                });
                cancel(ui, fresh, actions);
            }
            Phase::Incoming => incoming(call, ui, fresh, actions),
            Phase::Connected => connected(app, call, ui, actions, side_open && !wide),
            Phase::Ended { why, failed } => {
                let color = if *failed {
                    super::bad(ui)
                } else {
                    ui.visuals().text_color()
                };
                ui.add(egui::Label::new(RichText::new(why).size(BODY).color(color)).wrap());
                ui.add(egui::Label::new(words::NOTHING_STORED).wrap());
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

/// Below this width (in points, so zoom counts) chat and files do not fit beside the picture.
const WIDE: f32 = 900.0;
/// The width of the chat and files column.
const SIDE: f32 = 340.0;

/// F11 (or F) toggles full screen; Escape leaves it.
fn keys(app: &mut App, ctx: &egui::Context) {
    let typing = ctx.memory(|m| m.focused().is_some()) && ctx.egui_wants_keyboard_input();
    let (f11, f, esc) = ctx.input(|i| {
        (
            i.key_pressed(egui::Key::F11),
            i.key_pressed(egui::Key::F),
            i.key_pressed(egui::Key::Escape),
        )
    });
    if f11 || (f && !typing) {
        set_fullscreen(app, ctx, !app.fields.fullscreen);
    } else if esc && app.fields.fullscreen {
        set_fullscreen(app, ctx, false);
    }
}

fn set_fullscreen(app: &mut App, ctx: &egui::Context, on: bool) {
    if app.fields.fullscreen != on {
        app.fields.fullscreen = on;
        ctx.send_viewport_cmd(egui::ViewportCommand::Fullscreen(on));
    }
}

/// Full screen: their picture over the whole screen, ours in its corner, and the call's
/// essential controls floating over the bottom edge.
fn fullscreen(app: &mut App, call: &CallView, ui: &mut egui::Ui, actions: &mut Vec<Action>) {
    egui::CentralPanel::default()
        .frame(egui::Frame::new().fill(Color32::BLACK))
        .show(ui, |ui| {
            video(app, call, ui);
        });
    let ctx = ui.ctx().clone();
    egui::Area::new(egui::Id::unique("fullscreen-controls"))
        .order(egui::Order::Foreground)
        .anchor(egui::Align2::CENTER_BOTTOM, [0.0, -12.0])
        .show(&ctx, |ui| {
            egui::Frame::new()
                .fill(Color32::from_black_alpha(190))
                .inner_margin(8.0)
                .corner_radius(8.0)
                .show(ui, |ui| {
                    ui.set_max_width(ctx.content_rect().width() - 40.0);
                    ui.horizontal_wrapped(|ui| {
                        timer(call, ui);
                        media_buttons(call, ui, actions);
                        if ui
                            .button(RichText::new(words::LEAVE_FULL_SCREEN).size(BODY))
                            .clicked()
                        {
                            set_fullscreen(app, &ctx, false);
                        }
                        hang_up(ui, actions);
                    });
                });
        });
}

fn timer(call: &CallView, ui: &mut egui::Ui) {
    if let Some(t) = call.connected_at {
        ui.label(
            RichText::new(words::call_time(t.elapsed().as_secs()))
                .size(BODY)
                .monospace(),
        );
        // The timer moves once a second even when nothing else does.
        ui.ctx()
            .request_repaint_after(std::time::Duration::from_millis(500));
    }
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
        ui.add(
            egui::Label::new(RichText::new(format!("Peer ID {}", call.peer_id)).monospace())
                .wrap_mode(egui::TextWrapMode::Wrap),
        );
        ui.add(egui::Label::new("Answer only if you expect a call from someone new; you can compare the security code once connected.").wrap());
    } else if !call.verified {
        ui.add(egui::Label::new("You have not compared security codes with them yet.").wrap());
    }
    ui.add_space(12.0);
    ui.horizontal_wrapped(|ui| {
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

fn connected(
    app: &mut App,
    call: &CallView,
    ui: &mut egui::Ui,
    actions: &mut Vec<Action>,
    side_here: bool,
) {
    // What is above the picture takes what it needs, up to most of a short window (then it
    // scrolls); the picture takes the rest.
    // With the chat in the picture's place, the chat gets most of the room instead.
    let share = if side_here { 0.35 } else { 0.62 };
    let most = (ui.available_height() * share).max(64.0);
    let head = egui::ScrollArea::vertical()
        .id_salt("call-head")
        .max_height(most)
        .auto_shrink([false, true])
        .show(ui, |ui| head(app, call, ui, actions));
    super::scroll_region(ui, head.inner_rect);
    if side_here {
        // A narrow window: the chat and files in the picture's place, until put away.
        if ui
            .button(RichText::new(words::BACK_TO_VIDEO).size(BODY))
            .clicked()
        {
            app.fields.side_open = Some(false);
        }
        let out = egui::ScrollArea::vertical()
            .id_salt("side-narrow")
            .auto_shrink([false, false])
            .show(ui, |ui| side_content(app, call, ui, actions));
        super::scroll_region(ui, out.inner_rect);
    } else {
        video(app, call, ui);
    }
}

/// Above the picture: the security code, the controls and the path.
fn head(app: &mut App, call: &CallView, ui: &mut egui::Ui, actions: &mut Vec<Action>) {
    if call.reconnecting {
        ui.horizontal_wrapped(|ui| {
            ui.spinner();
            ui.add(egui::Label::new(RichText::new(words::RECONNECTING).size(BODY)).wrap());
        });
    }
    sas(app, call, ui, actions);
    ui.add_space(4.0);
    ui.horizontal_wrapped(|ui| {
        timer(call, ui);
        media_buttons(call, ui, actions);
        if call.controls().chat {
            let wide = ui.ctx().content_rect().width() >= WIDE;
            let open = app.fields.side_open.unwrap_or(wide);
            let label = if open {
                words::HIDE_CHAT
            } else {
                words::CHAT_FILES
            };
            if ui.button(RichText::new(label).size(BODY)).clicked() {
                app.fields.side_open = Some(!open);
            }
        }
        if ui
            .button(RichText::new(words::FULL_SCREEN).size(BODY))
            .clicked()
        {
            let ctx = ui.ctx().clone();
            set_fullscreen(app, &ctx, true);
        }
        hang_up(ui, actions);
    });
    if let Some(s) = &call.stats {
        path_line(s, ui);
    }
}

/// One short line about the path; the details come on hover.
fn path_line(s: &crate::model::PathStats, ui: &mut egui::Ui) {
    let video = match (s.video_in, s.video_out) {
        (None, None) => String::new(),
        (i, o) => {
            let f = |v: Option<(u32, u32)>| v.map_or("none".into(), |(w, h)| format!("{w}x{h}"));
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
    let details = format!(
        "Direct to {} · round trip {:.0} ms · loss {:.1} % · sending {:.0} kb/s{voice} · receiving {:.0} kb/s{video}{echo}",
        s.remote, s.rtt_ms, s.loss_percent, s.send_kbps, s.recv_kbps
    );
    ui.add(
        egui::Label::new(
            RichText::new(format!(
                "Direct · round trip {:.0} ms · loss {:.1} %",
                s.rtt_ms, s.loss_percent
            ))
            .small()
            .weak(),
        )
        .wrap(),
    )
    .on_hover_text(details);
}

/// The security code, large, with the button that records the comparison. The code never
/// wraps: its size follows the width there is.
fn sas(app: &mut App, call: &CallView, ui: &mut egui::Ui, actions: &mut Vec<Action>) {
    let Some(code) = &call.sas else {
        return;
    };
    let glyphs = code.chars().count().max(1) as f32;
    let fit = (ui.available_width() - 24.0) / (glyphs * 0.62);
    egui::Frame::new()
        .fill(ui.visuals().extreme_bg_color)
        .inner_margin(8.0)
        .corner_radius(6.0)
        .show(ui, |ui| {
            if call.verified {
                ui.horizontal_wrapped(|ui| {
                    ui.label(RichText::new(words::SECURITY_CODE).weak());
                    ui.add(
                        egui::Label::new(RichText::new(code).monospace().size(fit.min(BODY)))
                            .wrap_mode(egui::TextWrapMode::Extend),
                    );
                    ui.add(
                        egui::Label::new(RichText::new(words::SAS_DONE).color(super::good(ui)))
                            .wrap(),
                    );
                });
                return;
            }
            let size = fit.clamp(12.0, 34.0);
            let code_label = |ui: &mut egui::Ui| {
                ui.add(
                    egui::Label::new(RichText::new(code).monospace().size(size).strong())
                        .wrap_mode(egui::TextWrapMode::Extend),
                );
            };
            let words_about = |ui: &mut egui::Ui| {
                ui.add(egui::Label::new(words::SAS_TITLE).wrap());
                ui.add(egui::Label::new(RichText::new(words::SAS_MISMATCH).weak()).wrap());
            };
            // The words beside the code when they have room for whole lines there, below
            // it otherwise.
            let code_width = glyphs * 0.62 * size + 16.0;
            if ui.available_width() - code_width >= 320.0 {
                ui.horizontal(|ui| {
                    code_label(ui);
                    ui.vertical(|ui| {
                        ui.set_max_width(ui.available_width().min(560.0));
                        words_about(ui);
                    });
                });
            } else {
                code_label(ui);
                words_about(ui);
            }
            if call.contact.is_some() {
                if ui.button(words::SAS_COMPARED).clicked() {
                    actions.push(Action::MarkVerified);
                }
            } else {
                ui.horizontal_wrapped(|ui| {
                    let name = ui.add(
                        egui::TextEdit::singleline(&mut app.fields.caller_name)
                            .hint_text(words::NAME_FIELD)
                            .desired_width(140.0f32.min(ui.available_width())),
                    );
                    super::name(ui, &name, words::NAME_FIELD);
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
        });
}

fn media_buttons(call: &CallView, ui: &mut egui::Ui, actions: &mut Vec<Action>) {
    let size = |t: &str| RichText::new(t).size(BODY);
    let mute = if call.muted {
        words::UNMUTE
    } else {
        words::MUTE
    };
    if ui.button(size(mute)).clicked() {
        actions.push(Action::Mute(!call.muted));
    }
    let camera = if call.camera_on {
        words::CAMERA_OFF
    } else {
        words::CAMERA_ON
    };
    if ui.button(size(camera)).clicked() {
        actions.push(Action::Camera(!call.camera_on));
    }
    let share = if call.sharing {
        words::STOP_SHARE
    } else {
        words::SHARE
    };
    if ui.button(size(share)).clicked() {
        actions.push(Action::Share(!call.sharing));
    }
}

fn hang_up(ui: &mut egui::Ui, actions: &mut Vec<Action>) {
    let hang = egui::Button::new(RichText::new(words::HANG_UP).size(BODY))
        .fill(Color32::from_rgb(140, 40, 40));
    if ui.add(hang).clicked() {
        actions.push(Action::HangUp);
    }
}

/// Their picture filling the space left, kept to its shape on black, with ours small in its
/// corner. A double click toggles full screen.
fn video(app: &mut App, call: &CallView, ui: &mut egui::Ui) {
    let ppp = ui.ctx().pixels_per_point();
    let area = ui.available_rect_before_wrap();
    let max_px = (area.width() * ppp).clamp(64.0, 1920.0) as u32;
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
    let resp = ui.allocate_rect(area, egui::Sense::click());
    resp.widget_info(|| egui::WidgetInfo::labeled(egui::Role::Image, true, words::THEIR_VIDEO));
    if resp.double_clicked() {
        let on = !app.fields.fullscreen;
        set_fullscreen(app, ui.ctx(), on);
    }
    let painter = ui.painter_at(area);
    painter.rect_filled(area, 4.0, Color32::BLACK);
    let whole = egui::Rect::from_min_max(egui::pos2(0.0, 0.0), egui::pos2(1.0, 1.0));
    match &app.textures.remote {
        Some((_, tex)) => {
            let size = tex.size_vec2();
            let scale = (area.width() / size.x)
                .min(area.height() / size.y)
                .max(0.01);
            let rect = egui::Rect::from_center_size(area.center(), size * scale);
            painter.image(tex.id(), rect, whole, Color32::WHITE);
        }
        None => {
            let text = if call
                .stats
                .as_ref()
                .is_some_and(|s| s.video_in.is_none() && s.frames_shown == 0)
            {
                words::NO_REMOTE_VIDEO
            } else {
                words::WAITING_VIDEO
            };
            painter.text(
                area.center(),
                egui::Align2::CENTER_CENTER,
                text,
                egui::FontId::proportional(BODY),
                Color32::from_gray(200),
            );
        }
    }
    if let Some((_, p)) = &app.textures.preview {
        let ps = p.size_vec2();
        let w = (area.width() / 4.0)
            .clamp(48.0, 320.0)
            .min(area.width() / 2.0);
        let h = w * ps.y / ps.x;
        if h < area.height() / 2.0 {
            let rect = egui::Rect::from_min_size(
                area.right_bottom() - egui::vec2(w + 8.0, h + 8.0),
                egui::vec2(w, h),
            );
            painter.rect_filled(rect.expand(2.0), 2.0, Color32::WHITE);
            painter.image(p.id(), rect, whole, Color32::WHITE);
            let ours = ui.interact(rect, egui::Id::unique("our-picture"), egui::Sense::hover());
            ours.widget_info(|| {
                egui::WidgetInfo::labeled(egui::Role::Image, true, words::OUR_VIDEO)
            });
        }
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

/// The chat and files column beside the picture; it scrolls when it outgrows the window.
fn side(app: &mut App, call: &CallView, ui: &mut egui::Ui, actions: &mut Vec<Action>) {
    let out = egui::ScrollArea::vertical()
        .id_salt("side")
        .auto_shrink([false, false])
        .show(ui, |ui| side_content(app, call, ui, actions));
    super::scroll_region(ui, out.inner_rect);
}

fn side_content(app: &mut App, call: &CallView, ui: &mut egui::Ui, actions: &mut Vec<Action>) {
    ui.label(RichText::new(words::CHAT).size(HEADING));
    let chat_height = (ui.ctx().content_rect().height() * 0.3).max(80.0);
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
        super::name(ui, &field, words::MESSAGE);
        let enter = field.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
        if (ui.button(words::SEND).clicked() || enter) && !app.fields.chat.trim().is_empty() {
            actions.push(Action::Chat(std::mem::take(&mut app.fields.chat)));
            field.request_focus();
        }
    });
    ui.separator();
    ui.label(RichText::new(words::SEND_FILE).size(BODY).strong());
    ui.add(egui::Label::new(RichText::new(words::DROP_HINT).weak()).wrap());
    ui.horizontal(|ui| {
        let field = ui.add(
            egui::TextEdit::singleline(&mut app.fields.file)
                .hint_text(words::FILE_PATH)
                .desired_width(ui.available_width() - 60.0),
        );
        super::name(ui, &field, words::FILE_PATH);
        if ui.button(words::SEND).clicked() && !app.fields.file.trim().is_empty() {
            let path = std::mem::take(&mut app.fields.file);
            actions.push(Action::SendFiles(vec![path.trim().into()]));
        }
    });
    ui.horizontal_wrapped(|ui| {
        if ui.button(words::CHOOSE_FILES).clicked() {
            actions.push(Action::PickFiles { folder: false });
        }
        if ui.button(words::CHOOSE_FOLDER).clicked() {
            actions.push(Action::PickFiles { folder: true });
        }
    });
    if call.preparing {
        ui.horizontal_wrapped(|ui| {
            ui.spinner();
            ui.add(egui::Label::new(words::PREPARING).wrap());
        });
    }
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
                            .color(super::good(ui)),
                    );
                    if let Some(dir) = folder {
                        if ui.button(words::SHOW_FOLDER).clicked() {
                            actions.push(Action::ShowFolder(dir.clone()));
                        }
                    }
                });
            }
            TransferState::Stopped { why } => {
                ui.label(RichText::new(why).color(super::bad(ui)));
            }
        }
    }
}
