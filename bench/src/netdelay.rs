//! Adds delay to a network namespace's packets, for the lossy-link benchmark: this kernel has
//! no netem, so packets sent to an NFQUEUE are held here and let go once their delay is up.
//! Order is kept (every packet waits the same time). Loss and rate stay in the kernel
//! (iptables statistic, tbf).
//!
//! Usage (as root, inside the namespace whose arriving packets it delays):
//!   iptables -A INPUT -i IF -j NFQUEUE --queue-num 0
//!   netdelay --queue 0 --delay-ms 20
//! Delay arrivals, not departures: a packet held on its way out still counts against its
//! sender's socket memory, which then caps TCP and UDP alike at a few hundred kB per delay.
#![forbid(unsafe_code)]

use std::collections::VecDeque;
use std::time::{Duration, Instant};

fn arg(args: &[String], name: &str, default: u64) -> u64 {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{name} takes a number, not {v}"))
        })
        .unwrap_or(default)
}

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!(
            "netdelay --queue N --delay-ms MS: holds each packet of NFQUEUE N for MS milliseconds"
        );
        return Ok(());
    }
    let queue_num = arg(&args, "--queue", 0) as u16;
    let delay = Duration::from_millis(arg(&args, "--delay-ms", 20));
    let mut queue = nfq::Queue::open()?;
    queue.bind(queue_num)?;
    // Only the verdict matters: copy no payload.
    queue.set_copy_range(queue_num, 0)?;
    queue.set_queue_max_len(queue_num, 100_000)?;
    queue.set_nonblocking(true);
    let mut held: VecDeque<(Instant, nfq::Message)> = VecDeque::new();
    loop {
        loop {
            match queue.recv() {
                Ok(mut msg) => {
                    msg.set_verdict(nfq::Verdict::Accept);
                    held.push_back((Instant::now() + delay, msg));
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        let now = Instant::now();
        while held.front().is_some_and(|(due, _)| *due <= now) {
            let (_, msg) = held.pop_front().expect("checked above");
            queue.verdict(msg)?;
        }
        // Short naps: a packet leaves at most this late, and arrivals are drained as often.
        let next = held
            .front()
            .map(|(due, _)| due.saturating_duration_since(now))
            .unwrap_or(Duration::from_millis(1));
        std::thread::sleep(next.min(Duration::from_micros(200)));
    }
}
