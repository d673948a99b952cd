//! A call's media controls (`extrasafe_app::media`) on a real call between two nodes on
//! 127.0.0.1, with real video: the camera off stops sending, a shared screen is sent even
//! with the camera off (and goes on when the camera is switched), and stopping the share
//! goes back to the camera's state.

use std::time::Duration;

use extrasafe_app::media::{CallMedia, MediaError};
use extrasafe_core::SessionConfig;
use extrasafe_net::video::{VideoCall, VideoConfig, VideoStats};
use extrasafe_net::video_media::{NoVideo, TestPattern};
use extrasafe_net::{AcceptPolicy, Call, CallEvent, Node, NodeConfig};

fn config() -> NodeConfig {
    NodeConfig {
        bind: "127.0.0.1:0".parse().unwrap(),
        policy: AcceptPolicy::Anyone,
        session: SessionConfig {
            hello_timeout: Duration::from_secs(1),
            ..SessionConfig::default()
        },
        handshake_timeout: Duration::from_secs(3),
        ring_burst: 10_000,
        ..NodeConfig::default()
    }
}

async fn connected() -> (Node, Node, Call, Call) {
    let a = Node::bind(&extrasafe_net::new_identity(), config())
        .await
        .unwrap();
    let b = Node::bind(&extrasafe_net::new_identity(), config())
        .await
        .unwrap();
    let mut alice = a.call(&b.ticket_for(b.local_addr())).await.unwrap();
    let mut bob = tokio::time::timeout(Duration::from_secs(5), b.incoming())
        .await
        .unwrap()
        .unwrap();
    for c in [&mut alice, &mut bob] {
        loop {
            let e = tokio::time::timeout(Duration::from_secs(10), c.next_event())
                .await
                .expect("no call event within 10 s")
                .expect("events ended");
            if matches!(e, CallEvent::Connected { .. }) {
                break;
            }
        }
    }
    (a, b, alice, bob)
}

/// Waits until `what` holds of the two sides' figures (a loaded machine only takes longer).
async fn until(
    label: &str,
    sender: &VideoCall,
    receiver: &VideoCall,
    what: impl Fn(&VideoStats, &VideoStats) -> bool,
) {
    tokio::time::timeout(Duration::from_secs(30), async {
        while !what(&sender.stats(), &receiver.stats()) {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("not within 30 s: {label}; {:?}", sender.stats()));
}

const CAMERA: (u32, u32) = (320, 180);
const SCREEN: (u32, u32) = (480, 272);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn camera_and_screen_sharing_combine_the_same_way_for_every_front_end() {
    let (_a, _b, alice, bob) = connected().await;
    let sent = VideoCall::start(
        alice.media(),
        VideoConfig::default(),
        Some(Box::new(TestPattern::new(CAMERA.0, CAMERA.1, 15))),
        Box::new(NoVideo),
    );
    let seen = VideoCall::start(bob.media(), VideoConfig::default(), None, Box::new(NoVideo));
    let mut media = CallMedia::new(None, Some(sent), true);
    fn v(m: &CallMedia) -> &VideoCall {
        m.video().expect("video")
    }
    assert!(media.state().camera_on && !media.state().video_paused());
    until("the camera's picture arrives", v(&media), &seen, |s, r| {
        s.sending && r.recv_size == Some(CAMERA)
    })
    .await;

    // Camera off: nothing is sent.
    assert!(media.set_camera(false, None).unwrap().video_paused());
    until("sending stops", v(&media), &seen, |s, _| !s.sending).await;

    // Sharing while the camera is off: the screen is sent all the same.
    let st = media
        .share(Some(Box::new(TestPattern::new(SCREEN.0, SCREEN.1, 15))))
        .unwrap();
    assert!(st.sharing && !st.camera_on && !st.video_paused());
    until("the shared screen arrives", v(&media), &seen, |s, r| {
        s.sending && r.recv_size == Some(SCREEN)
    })
    .await;

    // Switching the camera on and off while sharing does not stop the share: more of the
    // screen keeps arriving.
    media.set_camera(true, None).unwrap();
    let st = media.set_camera(false, None).unwrap();
    assert!(st.sharing && !st.video_paused());
    let shown = seen.stats().shown;
    until("the share goes on", v(&media), &seen, |s, r| {
        s.sending && r.recv_size == Some(SCREEN) && r.shown >= shown + 15
    })
    .await;

    // The share stops: back to the camera's state, which is off.
    assert!(media.share(None).unwrap().video_paused());
    until("sending stops again", v(&media), &seen, |s, _| !s.sending).await;

    // The camera on again: its picture arrives.
    media.set_camera(true, None).unwrap();
    until("the camera's picture again", v(&media), &seen, |s, r| {
        s.sending && r.recv_size == Some(CAMERA)
    })
    .await;

    // A call without audio cannot be muted.
    assert_eq!(media.set_muted(true), Err(MediaError::NoAudio));
    let end = media.stop().await;
    assert!(end.audio.is_none());
    let (stats, finished) = end.video.expect("video ran");
    assert!(finished.is_ok(), "{finished:?}");
    assert!(stats.sender.keyframes >= 2, "{:?}", stats.sender);
    let _ = seen.stop().await;
    alice.hangup();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receive_only_call_turns_its_camera_on_with_the_source_given_then() {
    let (_a, _b, alice, bob) = connected().await;
    let sent = VideoCall::start(
        alice.media(),
        VideoConfig::default(),
        None,
        Box::new(NoVideo),
    );
    let seen = VideoCall::start(bob.media(), VideoConfig::default(), None, Box::new(NoVideo));
    let mut media = CallMedia::new(None, Some(sent), false);
    assert!(!media.state().camera_on);
    // Nothing to turn on yet.
    assert_eq!(media.set_camera(true, None), Err(MediaError::NoSource));
    assert!(!media.state().camera_on);
    media
        .set_camera(
            true,
            Some(Box::new(TestPattern::new(CAMERA.0, CAMERA.1, 15))),
        )
        .unwrap();
    until(
        "the picture arrives",
        media.video().unwrap(),
        &seen,
        |s, r| s.sending && r.recv_size == Some(CAMERA),
    )
    .await;
    let _ = media.stop().await;
    let _ = seen.stop().await;
    // No video at all: every switch says so.
    let mut none = CallMedia::new(None, None, true);
    assert!(!none.state().camera_on);
    assert_eq!(none.set_camera(true, None), Err(MediaError::NoVideo));
    assert_eq!(none.share(None), Err(MediaError::NoVideo));
    alice.hangup();
}
