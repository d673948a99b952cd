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

/// Gives a field the name a screen reader says: egui names a text field by nothing else
/// (its hint is not its name).
pub fn name(ui: &egui::Ui, field: &egui::Response, name: &str) {
    ui.ctx()
        .accesskit_node_builder(field.id, |n| n.set_label(name));
}

/// Green for what went well, readable on the light theme and the dark one.
pub fn good(ui: &egui::Ui) -> Color32 {
    if ui.visuals().dark_mode {
        Color32::from_rgb(60, 160, 80)
    } else {
        Color32::from_rgb(20, 110, 40)
    }
}

/// Red for what failed.
pub fn bad(ui: &egui::Ui) -> Color32 {
    ui.visuals().error_fg_color
}

/// Amber for what wants attention.
pub fn caution(ui: &egui::Ui) -> Color32 {
    ui.visuals().warn_fg_color
}

/// Where the scroll areas of this frame are: a control inside one may be below its fold
/// (the layout test reads them with the accessibility tree).
pub const SCROLL_REGIONS: &str = "scroll-regions";

/// Notes a scroll area's visible rectangle for this frame.
pub fn scroll_region(ui: &egui::Ui, rect: egui::Rect) {
    ui.ctx().data_mut(|d| {
        d.get_temp_mut_or_default::<Vec<egui::Rect>>(egui::Id::unique(SCROLL_REGIONS))
            .push(rect)
    });
}

pub fn draw(app: &mut App, ui: &mut egui::Ui, actions: &mut Vec<Action>) {
    ui.ctx()
        .data_mut(|d| d.remove::<Vec<egui::Rect>>(egui::Id::unique(SCROLL_REGIONS)));
    let in_call = app.model.call.is_some();
    // Settings are for between calls: a call closes them.
    if in_call {
        app.fields.settings_open = false;
    }
    // In a call the window's title names the call, and the picture wants the room.
    if !in_call {
        egui::Panel::top("top").show(ui, |ui| {
            ui.horizontal(|ui| {
                ui.label(RichText::new(words::APP).size(HEADING).strong());
                if app.model.stage == Stage::Ready && !in_call {
                    ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
                        // With "stay reachable", closing the window does not end the app.
                        if app.model.settings.stay_reachable && ui.button(words::QUIT).clicked() {
                            actions.push(Action::QuitApp);
                        }
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
        });
    }
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
        Stage::Ready if in_call => call::draw(app, ui, actions),
        Stage::Ready => home::draw(app, ui, actions),
    }
    notices(app, ui.ctx(), actions);
}

/// Notices float over the top of the window: they never push the picture or the controls
/// down, news goes by itself after a few seconds, errors stay until dismissed.
fn notices(app: &App, ctx: &egui::Context, actions: &mut Vec<Action>) {
    if app.model.notices.is_empty() {
        return;
    }
    let width = (ctx.content_rect().width() - 24.0).clamp(120.0, 560.0);
    egui::Area::new(egui::Id::unique("notices"))
        .order(egui::Order::Foreground)
        .anchor(egui::Align2::CENTER_TOP, [0.0, 44.0])
        .show(ctx, |ui| {
            ui.set_width(width);
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
                        ui.set_width(width - 16.0);
                        ui.add(
                            egui::Label::new(RichText::new(&n.text).color(text).size(BODY)).wrap(),
                        );
                        if ui.button(words::DISMISS).clicked() {
                            actions.push(Action::DismissNotice(i));
                        }
                    });
                ui.add_space(4.0);
            }
        });
}
