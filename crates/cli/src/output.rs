//! Everything printed on stdout: sentences for people, or one JSON object per line.

use std::io::Write;
use std::time::{Duration, SystemTime};

use extrasafe_core::text::for_display;
use extrasafe_core::{EndReason, PeerId, Ticket};
use extrasafe_net::CallInfo;
use serde_json::{json, Value};

#[derive(Clone, Copy, Debug)]
pub struct Output {
    pub json: bool,
}

/// The progress bars drawn on the terminal (transfers, the call's status line), if any:
/// lines for people are printed above them, never into them.
static BARS: std::sync::Mutex<Option<indicatif::MultiProgress>> = std::sync::Mutex::new(None);

/// Lines printed from now on go above these bars (while they are drawn).
pub fn print_above(bars: &indicatif::MultiProgress) {
    *BARS.lock().unwrap_or_else(|e| e.into_inner()) = Some(bars.clone());
}

fn drawn_bars() -> Option<indicatif::MultiProgress> {
    BARS.lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
        .filter(|b| !b.is_hidden())
}

/// Writes `text` as a line on `w`; with bars drawn, they are taken off the screen first
/// and drawn again after it, so the line never lands on a bar's line.
fn write_above(bars: Option<&indicatif::MultiProgress>, w: &mut dyn Write, text: &str) {
    let mut put = || {
        let _ = writeln!(w, "{text}");
        let _ = w.flush();
    };
    match bars {
        Some(b) => b.suspend(put),
        None => put(),
    }
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e5).round() / 100.0
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Local wall-clock time as HH:MM:SS.
pub fn clock(t: SystemTime) -> String {
    jiff::Timestamp::try_from(t)
        .ok()
        .map(|ts| {
            ts.to_zoned_datetime(jiff::tz::TimeZone::system())
                .strftime("%H:%M:%S")
                .to_string()
        })
        .unwrap_or_else(|| "--:--:--".into())
}

impl Output {
    /// Prints `human` for people or `value` as one JSON line.
    pub fn emit(&self, human: impl AsRef<str>, value: Value) {
        if self.json {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{value}");
            let _ = out.flush();
        } else {
            write_above(
                drawn_bars().as_ref(),
                &mut std::io::stdout().lock(),
                human.as_ref(),
            );
        }
    }

    /// Human-only text (hints); nothing in JSON mode.
    pub fn hint(&self, human: impl AsRef<str>) {
        if !self.json {
            self.emit(human, Value::Null);
        }
    }

    pub fn identity(
        &self,
        peer: &PeerId,
        ticket: &Ticket,
        created: bool,
        sealed: bool,
        event: &str,
    ) {
        let addrs: Vec<String> = ticket.addrs.iter().map(|a| a.to_string()).collect();
        let mut human = String::new();
        if created {
            human.push_str("Created a new identity on this device.\n");
        }
        human.push_str(&format!("Peer ID:  {peer}\nTicket:   {ticket}\n"));
        human.push_str(&format!(
            "Reachable at: {}",
            if addrs.is_empty() {
                "(no network address found)".to_string()
            } else {
                addrs.join(", ")
            }
        ));
        if sealed {
            human.push_str("\nKey file: protected by a passphrase");
        }
        self.emit(
            human,
            json!({"event": event, "peer_id": peer.to_string(), "ticket": ticket.to_string(),
                   "addrs": addrs, "created": created, "passphrase": sealed}),
        );
    }

    pub fn qr(&self, ticket: &Ticket) {
        if self.json {
            return;
        }
        match qrcode::QrCode::new(ticket.to_uppercase_string().as_bytes()) {
            Ok(code) => {
                let art = code
                    .render::<qrcode::render::unicode::Dense1x2>()
                    .dark_color(qrcode::render::unicode::Dense1x2::Light)
                    .light_color(qrcode::render::unicode::Dense1x2::Dark)
                    .quiet_zone(true)
                    .build();
                self.emit(art, Value::Null);
            }
            Err(e) => self.emit(format!("(cannot draw a QR code: {e})"), Value::Null),
        }
    }

    pub fn secured(&self, info: &CallInfo) {
        self.emit(
            format!(
                "Secured in {:.1} ms (TLS 1.3, {}, their key verified).",
                ms(info.handshake),
                info.key_exchange
            ),
            json!({"event": "secured", "peer_id": info.peer.to_string(), "remote": info.remote.to_string(),
                   "handshake_ms": ms(info.handshake), "key_exchange": info.key_exchange}),
        );
    }

    pub fn incoming(&self, info: &CallInfo) {
        self.emit(
            format!(
                "\nIncoming call from {}\n  Safety number:     {}\nAnswer? Type y and Enter to answer, anything else to decline.\n(The verification code follows in a moment.)",
                info.peer, info.safety_number
            ),
            json!({"event": "incoming", "peer_id": info.peer.to_string(), "sas": info.sas(),
                   "safety_number": info.safety_number}),
        );
    }

    /// The verification code, once both sides committed to it.
    pub fn verification(&self, code: &str) {
        self.emit(
            format!("  Verification code: {code}   ← read it to each other; it must match on both screens"),
            json!({"event": "verification", "sas": code}),
        );
    }

    pub fn ringing(&self) {
        self.emit("Ringing…", json!({"event": "ringing"}));
    }

    pub fn connected(&self, info: &CallInfo, after: Duration) {
        self.emit(
            format!(
                "Connected with {} in {:.1} ms.\n  Verification code: {}\n  Safety number:     {}\nType a message and press Enter. /stats shows the call's figures, /help the commands; /hangup or Ctrl-D ends the call.",
                info.peer,
                ms(after),
                match info.sas() {
                    Some(code) => format!("{code}   ← read it to each other; it must match on both screens"),
                    None => "shown in a moment".to_string(),
                },
                info.safety_number
            ),
            json!({"event": "connected", "peer_id": info.peer.to_string(), "sas": info.sas(),
                   "safety_number": info.safety_number, "connect_ms": ms(after),
                   "handshake_ms": ms(info.handshake), "remote": info.remote.to_string()}),
        );
    }

    pub fn reconnecting(&self) {
        self.emit(
            "Connection lost. Reconnecting… (the call is kept for up to 90 s; /hangup ends it)",
            json!({"event": "reconnecting"}),
        );
    }

    pub fn reconnected(&self, remote: std::net::SocketAddr) {
        self.emit(
            "Reconnected. The call goes on.",
            json!({"event": "reconnected", "remote": remote.to_string()}),
        );
    }

    pub fn chat(&self, who: &str, text: &str, at: SystemTime) {
        self.emit(
            format!("[{}] {who}: {}", clock(at), for_display(text)),
            json!({"event": "chat", "from": who, "text": text, "time_ms": unix_ms(at)}),
        );
    }

    pub fn sent(&self, text: &str) {
        if self.json {
            self.emit(
                "",
                json!({"event": "sent", "text": text, "time_ms": unix_ms(SystemTime::now())}),
            );
        }
    }

    pub fn ended(&self, reason: &EndReason, human: &str) {
        self.emit(
            format!("Call ended. {human}"),
            json!({"event": "ended", "reason": format!("{reason:?}"), "message": human}),
        );
    }

    /// The audio stats line for people.
    pub fn stats_line(s: &extrasafe_net::audio::AudioStats) -> String {
        let secs = s.elapsed.as_secs_f64().max(0.001);
        let slots = (s.jitter.played + s.jitter.lost).max(1);
        let loss = s.jitter.lost as f64 * 100.0 / slots as f64;
        // What the path carries now (the connection's start, with its path-MTU probes, left
        // out once a few seconds have passed).
        let kbps = s
            .udp_tx_recent_bps
            .map_or(s.udp_tx_bytes as f64 * 8.0 / secs, |bps| bps)
            / 1000.0;
        let remote = s.remote.map(|r| r.to_string()).unwrap_or_default();
        let echo = match s.echo {
            None => " · echo cancellation off".to_string(),
            // The far end talked and nothing of it came back: the microphone passes as is.
            Some(e) if e.no_echo => " · no echo heard".to_string(),
            Some(e) => match (e.delay_ms, e.erle_db) {
                // Until it has found an echo, it only says it is on.
                (Some(d), Some(erle)) if erle >= 3.0 => format!(" · echo {d} ms, {erle:.0} dB out"),
                _ => " · echo cancellation on".to_string(),
            },
        };
        format!(
            "[stats] RTT {:.1} ms · loss {loss:.1} % · jitter {} ms · buffer {} ms · {kbps:.0} kb/s sent (voice {} kb/s, {} {}) · direct {remote}{echo}",
            s.rtt.as_secs_f64() * 1e3,
            s.network_jitter.as_millis(),
            s.buffered.max(s.target_delay).as_millis(),
            s.voice_bitrate / 1000,
            s.copies,
            if s.copies == 1 { "copy" } else { "copies" }
        )
    }

    /// The video stats line for people.
    pub fn video_line(s: &extrasafe_net::video::VideoStats) -> String {
        format!("[video] {}", crate::videoplan::describe(s))
    }

    /// The stats of an audio call, as a line for people or a JSON event.
    pub fn stats(&self, s: &extrasafe_net::audio::AudioStats) {
        let secs = s.elapsed.as_secs_f64().max(0.001);
        let slots = (s.jitter.played + s.jitter.lost).max(1);
        let loss = s.jitter.lost as f64 * 100.0 / slots as f64;
        // What the path carries now (the connection's start, with its path-MTU probes, left
        // out once a few seconds have passed).
        let kbps = s
            .udp_tx_recent_bps
            .map_or(s.udp_tx_bytes as f64 * 8.0 / secs, |bps| bps)
            / 1000.0;
        let remote = s.remote.map(|r| r.to_string()).unwrap_or_default();
        self.emit(
            Self::stats_line(s),
            json!({"event": "stats", "rtt_ms": s.rtt.as_secs_f64() * 1e3, "loss_percent": loss,
                   "jitter_ms": s.network_jitter.as_secs_f64() * 1e3,
                   "buffer_ms": s.buffered.as_millis() as u64, "target_delay_ms": s.target_delay.as_millis() as u64,
                   "send_kbps": kbps, "remote": remote, "sent": s.sent, "received": s.received.datagrams,
                   "malformed": s.received.malformed, "concealed": s.jitter.concealed, "lost": s.jitter.lost,
                   "played": s.jitter.played, "late": s.jitter.late,
                   "jitter_dropped": s.jitter.dropped, "jitter_inserted": s.jitter.inserted,
                   "frames_due": s.frames_due, "frames_caught_up": s.frames_caught_up,
                   "frames_dropped": s.frames_dropped, "frames_unsent": s.frames_unsent,
                   "echo_cancellation": s.echo.is_some(),
                   "echo_delay_ms": s.echo.and_then(|e| e.delay_ms),
                   "echo_erle_db": s.echo.and_then(|e| e.erle_db),
                   "echo_none_heard": s.echo.is_some_and(|e| e.no_echo),
                   "voice_kbps": s.voice_bitrate / 1000, "copies": s.copies,
                   "mode_switches": s.mode_switches}),
        );
    }

    pub fn video_stats(&self, s: &extrasafe_net::video::VideoStats) {
        let size = |s: Option<(u32, u32)>| s.map(|(w, h)| format!("{w}x{h}"));
        self.emit(
            Self::video_line(s),
            json!({"event": "video_stats", "sending": s.sending, "send_size": size(s.send_size),
                   "send_fps": s.send_fps, "send_bps": s.send_bps, "target_bps": s.target_bps,
                   "recv_size": size(s.recv_size), "recv_fps": s.recv_fps, "recv_bps": s.recv_bps,
                   "shown": s.shown, "frozen": s.frozen, "repaired": s.receiver.repaired,
                   "given_up": s.receiver.given_up, "keyframe_requests": s.receiver.keyframe_requests,
                   "retransmitted": s.sender.retransmitted, "decode_errors": s.decode_errors}),
        );
    }

    pub fn warn(&self, text: &str) {
        self.emit(
            format!("! {text}"),
            json!({"event": "warning", "message": text}),
        );
    }

    pub fn error(&self, text: &str) {
        if self.json {
            self.emit("", json!({"event": "error", "message": text}));
        } else {
            write_above(
                drawn_bars().as_ref(),
                &mut std::io::stderr().lock(),
                &format!("extrasafe: {text}"),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// A terminal in memory: what was drawn, in order.
    #[derive(Debug, Clone, Default)]
    struct Screen(Arc<Mutex<Vec<String>>>);

    impl Screen {
        fn log(&self, s: String) {
            self.0.lock().unwrap().push(s);
        }
    }

    impl indicatif::TermLike for Screen {
        fn width(&self) -> u16 {
            100
        }
        fn move_cursor_up(&self, n: usize) -> std::io::Result<()> {
            self.log(format!("up {n}"));
            Ok(())
        }
        fn move_cursor_down(&self, n: usize) -> std::io::Result<()> {
            self.log(format!("down {n}"));
            Ok(())
        }
        fn move_cursor_right(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn move_cursor_left(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn write_line(&self, s: &str) -> std::io::Result<()> {
            self.log(format!("bar {s}"));
            Ok(())
        }
        fn write_str(&self, s: &str) -> std::io::Result<()> {
            if !s.is_empty() {
                self.log(format!("bar {s}"));
            }
            Ok(())
        }
        fn clear_line(&self) -> std::io::Result<()> {
            self.log("clear".into());
            Ok(())
        }
        fn flush(&self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// What the program prints, into the same record.
    struct Lines(Screen);

    impl Write for Lines {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            let text = String::from_utf8_lossy(b).trim_end().to_string();
            if !text.is_empty() {
                self.0.log(format!("text {text}"));
            }
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_line_printed_while_bars_are_drawn_goes_above_them_not_into_them() {
        let screen = Screen::default();
        let bars = indicatif::MultiProgress::with_draw_target(
            indicatif::ProgressDrawTarget::term_like(Box::new(screen.clone())),
        );
        let status = bars.add(indicatif::ProgressBar::new_spinner());
        status.set_style(indicatif::ProgressStyle::with_template("{msg}").unwrap());
        status.set_message("[stats] RTT 1.0 ms");
        status.tick();
        let drawn = screen.0.lock().unwrap().len();
        assert!(
            screen
                .0
                .lock()
                .unwrap()
                .iter()
                .any(|l| l.contains("[stats]")),
            "{:?}",
            screen.0.lock().unwrap()
        );
        write_above(Some(&bars), &mut Lines(screen.clone()), "them: hello");
        let after: Vec<String> = screen.0.lock().unwrap()[drawn..].to_vec();
        let text = after
            .iter()
            .position(|l| l == "text them: hello")
            .unwrap_or_else(|| panic!("{after:?}"));
        // The status line was taken off (its line cleared) before the text and drawn again
        // after it: the text has a line of its own.
        assert!(after[..text].iter().any(|l| l == "clear"), "{after:?}");
        assert!(
            after[text + 1..].iter().any(|l| l.contains("[stats]")),
            "{after:?}"
        );
        assert!(
            !after[..text].iter().any(|l| l.contains("[stats]")),
            "{after:?}"
        );
        // Without bars the line is simply written.
        let plain = Screen::default();
        write_above(None, &mut Lines(plain.clone()), "just this");
        assert_eq!(*plain.0.lock().unwrap(), vec!["text just this".to_string()]);
    }
}
