//! A call outlives the loss of its path (issue 18): through a relay on loopback that can go
//! dark, a blackout longer than QUIC keeps a silent connection ends the connection on both
//! sides, yet the call goes on over a new one, with the same peers, chat and media; a call
//! hung up during the blackout is not brought back; a connection that names a call it does
//! not belong to takes nothing over.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use extrasafe_net::core::wire::{Decoded, FrameDecoder, Message, MAX_FRAME};
use extrasafe_net::core::{EndReason, SessionConfig, Ticket};
use extrasafe_net::{AcceptPolicy, Call, CallEvent, Node, NodeConfig};

/// Short timers, so a blackout of a few seconds outlasts the QUIC connection.
fn quick(policy: AcceptPolicy) -> NodeConfig {
    let base = config(policy);
    NodeConfig {
        session: SessionConfig {
            call_ping_interval: Duration::from_millis(250),
            stall_after: Duration::from_secs(1),
            reconnect_window: Duration::from_secs(40),
            ..base.session.clone()
        },
        idle_timeout: Duration::from_secs(2),
        ..base
    }
}

async fn quick_node(policy: AcceptPolicy) -> Node {
    let id = extrasafe_net::new_identity();
    Node::bind(&id, quick(policy)).await.unwrap()
}

/// A UDP relay between one client and `to` that can go dark (drops everything both ways).
struct Relay {
    addr: SocketAddr,
    dark: Arc<AtomicBool>,
    /// QUIC long-header packets (handshakes) from the client.
    long_headers: Arc<AtomicU64>,
    _tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Relay {
    async fn start(to: SocketAddr) -> Self {
        let front = Arc::new(tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap());
        let back = Arc::new(tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap());
        back.connect(to).await.unwrap();
        let dark = Arc::new(AtomicBool::new(false));
        let long_headers = Arc::new(AtomicU64::new(0));
        let client: Arc<std::sync::Mutex<Option<SocketAddr>>> = Default::default();
        let forward = {
            let (front, back, dark, client, long) = (
                front.clone(),
                back.clone(),
                dark.clone(),
                client.clone(),
                long_headers.clone(),
            );
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65_536];
                while let Ok((n, from)) = front.recv_from(&mut buf).await {
                    *client.lock().unwrap() = Some(from);
                    if buf[0] & 0x80 != 0 {
                        long.fetch_add(1, Ordering::Relaxed);
                    }
                    if !dark.load(Ordering::Relaxed) {
                        let _ = back.send(&buf[..n]).await;
                    }
                }
            })
        };
        let backward = {
            let (front, back, dark, client) =
                (front.clone(), back.clone(), dark.clone(), client.clone());
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65_536];
                while let Ok(n) = back.recv(&mut buf).await {
                    let to = *client.lock().unwrap();
                    if let (Some(to), false) = (to, dark.load(Ordering::Relaxed)) {
                        let _ = front.send_to(&buf[..n], to).await;
                    }
                }
            })
        };
        Self {
            addr: front.local_addr().unwrap(),
            dark,
            long_headers,
            _tasks: vec![forward, backward],
        }
    }

    fn set_dark(&self, dark: bool) {
        self.dark.store(dark, Ordering::Relaxed);
    }
}

/// The next event other than the verification code, within `wait`.
async fn event_within(call: &mut Call, wait: Duration) -> CallEvent {
    loop {
        let ev = tokio::time::timeout(wait, call.next_event())
            .await
            .expect("no call event in time")
            .expect("event stream ended");
        if !matches!(ev, CallEvent::VerificationCode(_)) {
            return ev;
        }
    }
}

/// `caller` calls `callee` through `relay`; both ends once connected.
async fn call_through(caller: &Node, callee: &Node, relay: &Relay) -> (Call, Call) {
    let t = ticket(callee);
    let via = Ticket {
        addrs: vec![relay.addr],
        ..t
    };
    let mut out = caller.call(&via).await.expect("call through the relay");
    let mut inc = incoming(callee).await;
    until_connected(&mut out).await;
    until_connected(&mut inc).await;
    (out, inc)
}

/// Sends audio-sized datagrams from `from` until `to` gets one (media flows), within 10 s.
async fn media_flows(from: &Call, to: &Call) {
    let (tx, rx) = (from.media(), to.media());
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let _ = tx.send(&[0x01; 80]);
            if let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(50), rx.recv()).await {
                return;
            }
        }
    })
    .await
    .expect("no media datagram arrived");
}

/// Both ends' next event (other than the code) is `event`, each within `wait`.
async fn both_say(out: &mut Call, inc: &mut Call, event: CallEvent, wait: Duration) {
    for (side, call) in [("caller", out), ("callee", inc)] {
        assert_eq!(event_within(call, wait).await, event, "{side}");
    }
}

/// After a resume: the same call (its verification code), chat and media both ways on the
/// new connection.
async fn same_call_goes_on(out: &mut Call, inc: &mut Call, code: &str) {
    assert_eq!(out.info().sas().as_deref(), Some(code));
    out.send_chat("back again").await.unwrap();
    match next(inc).await {
        CallEvent::Chat { text, .. } => assert_eq!(text, "back again"),
        other => panic!("{other:?}"),
    }
    inc.send_chat("and here").await.unwrap();
    match next(out).await {
        CallEvent::Chat { text, .. } => assert_eq!(text, "and here"),
        other => panic!("{other:?}"),
    }
    media_flows(out, inc).await;
    media_flows(inc, out).await;
}

#[tokio::test]
async fn a_call_goes_on_over_a_new_connection_after_a_blackout_that_killed_the_old_one() {
    let caller = quick_node(AcceptPolicy::Anyone).await;
    let callee = quick_node(AcceptPolicy::Anyone).await;
    let relay = Relay::start(addr(&callee)).await;
    let (mut out, mut inc) = call_through(&caller, &callee, &relay).await;
    let code = out.info().sas().expect("code settled");
    media_flows(&out, &inc).await;
    let handshakes_before = relay.long_headers.load(Ordering::Relaxed);

    relay.set_dark(true);
    both_say(
        &mut out,
        &mut inc,
        CallEvent::Reconnecting,
        Duration::from_secs(10),
    )
    .await;
    // Dark for more than twice QUIC's idle timeout: both ends of the old connection are gone.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(out.send_chat("into the dark").await.is_err());
    relay.set_dark(false);
    both_say(
        &mut out,
        &mut inc,
        CallEvent::Reconnected,
        Duration::from_secs(15),
    )
    .await;
    assert!(
        relay.long_headers.load(Ordering::Relaxed) > handshakes_before,
        "the call came back without a new handshake"
    );
    same_call_goes_on(&mut out, &mut inc, &code).await;
    assert!(caller.in_call() && callee.in_call());
    out.hangup();
    assert_eq!(
        next(&mut inc).await,
        CallEvent::Ended(EndReason::RemoteHangup)
    );
    assert_eq!(
        next(&mut out).await,
        CallEvent::Ended(EndReason::LocalHangup)
    );
    until_idle(&callee).await;
    until_idle(&caller).await;
}

#[tokio::test]
async fn a_call_hung_up_during_the_blackout_is_not_brought_back() {
    let caller = quick_node(AcceptPolicy::Anyone).await;
    let callee = quick_node(AcceptPolicy::Anyone).await;
    let relay = Relay::start(addr(&callee)).await;
    let (mut out, mut inc) = call_through(&caller, &callee, &relay).await;
    relay.set_dark(true);
    assert_eq!(
        event_within(&mut inc, Duration::from_secs(10)).await,
        CallEvent::Reconnecting
    );
    assert_eq!(
        event_within(&mut out, Duration::from_secs(10)).await,
        CallEvent::Reconnecting
    );
    // The callee gives up on the call while its path is dark.
    inc.hangup();
    assert_eq!(
        next(&mut inc).await,
        CallEvent::Ended(EndReason::LocalHangup)
    );
    until_idle(&callee).await;
    // Long enough for both ends of the old connection to be gone (QUIC's idle timeout is
    // 2 s here), so the caller comes back on a new one; had the old path carried the
    // goodbye, the outcome would be the same.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let handshakes_before = relay.long_headers.load(Ordering::Relaxed);
    relay.set_dark(false);
    // The caller's new connection asks for a call that is over, and hears so.
    assert_eq!(
        event_within(&mut out, Duration::from_secs(15)).await,
        CallEvent::Ended(EndReason::RemoteHangup)
    );
    assert!(relay.long_headers.load(Ordering::Relaxed) > handshakes_before);
    until_idle(&caller).await;
}

/// A client that is not part of the call connects (proving the ticket, as any caller may)
/// and asks, as its first words, to resume a call: with a token it made up, and with the
/// call's real token (as if it had learned it).
#[tokio::test]
async fn a_connection_naming_a_call_that_is_not_its_own_takes_nothing_over() {
    let (_a, caller) = node(AcceptPolicy::Anyone).await;
    let (_b, callee) = node(AcceptPolicy::Anyone).await;
    let (out, mut inc) = connected(&caller, &callee).await;
    assert_eq!(out.resume_token_for_tests(), inc.resume_token_for_tests());
    let real = out.resume_token_for_tests();
    for token in [[0x5a; 32], real] {
        resume_as_a_stranger(&callee, token).await;
        // The real call did not notice.
        out.send_chat("still us").await.unwrap();
        match next(&mut inc).await {
            CallEvent::Chat { text, .. } => assert_eq!(text, "still us"),
            other => panic!("{other:?}"),
        }
        assert!(callee.in_call());
    }
}

/// Connects to `callee` with a fresh identity and the callee's ticket, sends `Resume(token)`
/// and checks the answer: a hang-up, then the connection closed.
async fn resume_as_a_stranger(callee: &Node, token: [u8; 32]) {
    let stranger = extrasafe_net::new_identity();
    let t = ticket(callee);
    let (ep, mut client) = raw_client(&stranger, &t);
    client.initial_dst_cid_provider(proof(&t));
    let conn = ep
        .connect_with(client, t.addrs[0], "extrasafe")
        .unwrap()
        .await
        .expect("the ticket lets it connect");
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    let mut frame = Vec::new();
    Message::Resume { token }.encode(&mut frame).unwrap();
    send.write_all(&frame).await.unwrap();
    // The answer: the call is over (for this connection there is none), then the close.
    let mut got = Vec::new();
    let mut decoder = FrameDecoder::default();
    let answer = tokio::time::timeout(Duration::from_secs(5), async {
        while let Ok(Some(chunk)) = recv.read_chunk(MAX_FRAME, true).await {
            decoder.push(&chunk.bytes, &mut got).unwrap();
        }
    })
    .await;
    assert!(answer.is_ok(), "the connection was not closed");
    assert!(
        matches!(&got[..], [Decoded::Message(Message::Hangup { .. })]),
        "{got:?}"
    );
    ep.close(0u32.into(), b"");
}

#[tokio::test]
async fn after_a_short_dark_spell_the_call_comes_back_once_and_stays() {
    // QUIC keeps the connection through the dark spell; the call stalls and dials anew,
    // and whichever comes back first, it says so once and stays there.
    let long_idle = |p| NodeConfig {
        idle_timeout: Duration::from_secs(20),
        ..quick(p)
    };
    let caller = Node::bind(
        &extrasafe_net::new_identity(),
        long_idle(AcceptPolicy::Anyone),
    )
    .await
    .unwrap();
    let callee = Node::bind(
        &extrasafe_net::new_identity(),
        long_idle(AcceptPolicy::Anyone),
    )
    .await
    .unwrap();
    let relay = Relay::start(addr(&callee)).await;
    let (mut out, mut inc) = call_through(&caller, &callee, &relay).await;
    relay.set_dark(true);
    for call in [&mut out, &mut inc] {
        assert_eq!(
            event_within(call, Duration::from_secs(10)).await,
            CallEvent::Reconnecting
        );
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    relay.set_dark(false);
    for call in [&mut out, &mut inc] {
        assert_eq!(
            event_within(call, Duration::from_secs(30)).await,
            CallEvent::Reconnected
        );
    }
    // No second reconnect follows (a redial that completes late is not taken).
    for call in [&mut out, &mut inc] {
        let quiet = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                match call.next_event().await {
                    // The callee's code may come late; it is not about the path.
                    Some(CallEvent::VerificationCode(_)) => continue,
                    other => return other,
                }
            }
        })
        .await;
        assert!(quiet.is_err(), "{quiet:?}");
    }
    out.send_chat("steady").await.unwrap();
    match next(&mut inc).await {
        CallEvent::Chat { text, .. } => assert_eq!(text, "steady"),
        other => panic!("{other:?}"),
    }
    media_flows(&inc, &out).await;
}

/// Video runs through the blackout: both ends' `VideoCall`s stay as they are, the call
/// resumes on a new connection, and pictures flow again both ways at full size without the
/// front end doing anything (the media link moved under them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn video_comes_back_by_itself_after_a_blackout_that_killed_the_connection() {
    use extrasafe_net::video::{VideoCall, VideoConfig, VideoStats};
    use extrasafe_net::video_media::{NoVideo, TestPattern};

    const SIZE: (u32, u32) = (320, 180);
    let caller = quick_node(AcceptPolicy::Anyone).await;
    let callee = quick_node(AcceptPolicy::Anyone).await;
    let relay = Relay::start(addr(&callee)).await;
    let (mut out, mut inc) = call_through(&caller, &callee, &relay).await;
    let start = |call: &Call| {
        VideoCall::start(
            call.media(),
            VideoConfig::default(),
            Some(Box::new(TestPattern::new(SIZE.0, SIZE.1, 15))),
            Box::new(NoVideo),
        )
    };
    let (a, b) = (start(&out), start(&inc));
    // Waits until both ends have shown `more` pictures beyond `from` (at full size if
    // `full`). A loaded machine only takes longer.
    async fn both_show(
        a: &VideoCall,
        b: &VideoCall,
        from: (u64, u64),
        more: u64,
        full: bool,
        what: &str,
    ) {
        let ok = |s: &VideoStats, from: u64| {
            s.shown >= from + more && (!full || s.recv_size == Some(SIZE))
        };
        tokio::time::timeout(Duration::from_secs(90), async {
            while !(ok(&a.stats(), from.0) && ok(&b.stats(), from.1)) {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("{what}: {:?} / {:?}", a.stats(), b.stats()));
    }
    both_show(&a, &b, (0, 0), 15, true, "pictures before the blackout").await;

    relay.set_dark(true);
    for call in [&mut out, &mut inc] {
        assert_eq!(
            event_within(call, Duration::from_secs(10)).await,
            CallEvent::Reconnecting
        );
    }
    // Longer than QUIC keeps a silent connection (2 s here) on both ends.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let during = (a.stats().shown, b.stats().shown);
    relay.set_dark(false);
    for call in [&mut out, &mut inc] {
        assert_eq!(
            event_within(call, Duration::from_secs(15)).await,
            CallEvent::Reconnected
        );
    }
    let back = std::time::Instant::now();
    both_show(&a, &b, during, 1, false, "a picture after the call resumed").await;
    let first = back.elapsed();
    // The rate controller cut the target while nothing came back; it grows again, and the
    // picture returns to full size.
    both_show(
        &a,
        &b,
        during,
        30,
        true,
        "full-size pictures after the call resumed",
    )
    .await;
    eprintln!(
        "after the call resumed: first picture both ways in {first:?}, full size in {:?}",
        back.elapsed()
    );
    // A keyframe brought each picture back: nothing built on frames lost in the dark.
    let (sa, sb) = (a.stats(), b.stats());
    assert!(
        sa.sender.keyframes >= 2 && sb.sender.keyframes >= 2,
        "{sa:?} {sb:?}"
    );
    assert_eq!((sa.decode_errors, sb.decode_errors), (0, 0));
    let _ = a.stop().await;
    let _ = b.stop().await;
    out.hangup();
}

/// The path a contact was called on dies for good (the relay the caller dialled never comes
/// back, as when the contact's router gave it another address): the caller finds the
/// contact again through the DHT (the contact's presence says where it is now, the caller's
/// intent makes it punch back) and the same call goes on over a connection straight to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_contact_whose_address_died_is_found_again_through_the_dht() {
    use extrasafe_net::dht::{self, DhtConfig, Rendezvous};
    use extrasafe_net::dial::{dial, Search};
    let testnet = tokio::task::spawn_blocking(|| mainline::Testnet::builder(12).build().unwrap())
        .await
        .unwrap();
    let dht_config = DhtConfig {
        bootstrap: testnet.bootstrap.clone(),
        bind: std::net::Ipv4Addr::LOCALHOST,
        poll: Duration::from_millis(500),
        request_timeout: Duration::from_millis(500),
        ..DhtConfig::default()
    };
    let (alice_id, bob_id) = (extrasafe_net::new_identity(), extrasafe_net::new_identity());
    let contact_of =
        |me: &extrasafe_net::core::Identity, them: &extrasafe_net::core::Identity| NodeConfig {
            contacts: extrasafe_net::gate::contact_keys(me, &[them.peer_id()]),
            ..quick(AcceptPolicy::Anyone)
        };
    let alice = Node::bind(&alice_id, contact_of(&alice_id, &bob_id))
        .await
        .unwrap();
    let bob = Arc::new(
        Node::bind(&bob_id, contact_of(&bob_id, &alice_id))
            .await
            .unwrap(),
    );
    // Bob keeps his presence on the DHT and answers every intent with a punch.
    let bob_rv = Rendezvous::start(
        dht::pair_secrets(&bob_id, &[alice_id.peer_id()]).unwrap(),
        &dht_config,
    )
    .unwrap();
    let served = dht::serve(bob.clone(), Arc::new(bob_rv), dht_config.clone());
    let (mut intents, mut published) = (served.intents, served.published);
    tokio::time::timeout(Duration::from_secs(20), published.wait_for(|p| p.is_some()))
        .await
        .expect("Bob's record was never stored")
        .unwrap();
    let answered = Arc::new(AtomicU64::new(0));
    let answering = {
        let (bob, answered) = (bob.clone(), answered.clone());
        tokio::spawn(async move {
            while let Some(plan) = intents.recv().await {
                answered.fetch_add(1, Ordering::Relaxed);
                let bob = bob.clone();
                tokio::spawn(async move { bob.answer_punch(plan).await });
            }
        })
    };

    // Alice calls through the relay (the address she knew), with the DHT search on.
    let relay = Relay::start(addr(&bob)).await;
    let secrets = || dht::pair_secrets(&alice_id, &[bob_id.peer_id()]).unwrap();
    let search = Search {
        secrets: [secrets(), secrets(), secrets(), secrets()],
        lan: false,
        dht: Some(std::future::ready(dht_config.clone())),
        port_map: None,
    };
    let via = Ticket {
        peer: bob_id.peer_id(),
        secret: None,
        addrs: vec![relay.addr],
    };
    let mut out = dial(&alice, bob_id.peer_id(), Some(&via), Some(search), |_| {})
        .await
        .expect("Alice reaches Bob through the relay");
    let mut inc = incoming(&bob).await;
    until_connected(&mut out).await;
    until_connected(&mut inc).await;
    let code = out.info().sas().expect("code settled");
    media_flows(&out, &inc).await;
    assert_eq!(
        answered.load(Ordering::Relaxed),
        0,
        "no intent while the path held"
    );

    relay.set_dark(true);
    both_say(
        &mut out,
        &mut inc,
        CallEvent::Reconnecting,
        Duration::from_secs(10),
    )
    .await;
    both_say(
        &mut out,
        &mut inc,
        CallEvent::Reconnected,
        Duration::from_secs(40),
    )
    .await;
    assert!(answered.load(Ordering::Relaxed) >= 1, "Bob read no intent");
    // On a path that does not cross the relay (dark all along).
    same_call_goes_on(&mut out, &mut inc, &code).await;
    out.hangup();
    assert_eq!(
        next(&mut inc).await,
        CallEvent::Ended(EndReason::RemoteHangup)
    );
    answering.abort();
}
