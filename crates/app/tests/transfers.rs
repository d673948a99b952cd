//! A call's transfers as the front ends run them (`extrasafe_app::transfers`), between two
//! nodes on 127.0.0.1 with real files: offering, the policy's answer, accepting into a
//! folder that does not exist yet, declining, the limit on sends, and the events.

use std::path::PathBuf;
use std::time::Duration;

use extrasafe_app::policy::FilesDecision;
use extrasafe_app::transfers::{AnswerError, OfferError, TransferEvent, Transfers};
use extrasafe_app::FilesPolicy;
use extrasafe_core::SessionConfig;
use extrasafe_net::transfer::{self, TransferOutcome};
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

async fn next(call: &mut Call) -> CallEvent {
    tokio::time::timeout(Duration::from_secs(10), call.next_event())
        .await
        .expect("no call event within 10 s")
        .expect("events ended")
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
        while !matches!(next(c).await, CallEvent::Connected { .. }) {}
    }
    (a, b, alice, bob)
}

async fn offered(bob: &mut Call) -> (u64, extrasafe_core::transfer::offer::ValidOffer) {
    loop {
        if let CallEvent::FilesOffered { id, offer } = next(bob).await {
            return (id, offer);
        }
    }
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("es-app-transfers-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Polls until every transfer ended; returns the events in order.
async fn run_out(t: &mut Transfers) -> Vec<TransferEvent> {
    let mut all = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), async {
        while t.busy() {
            tokio::select! {
                _ = t.next_end() => {}
                _ = tokio::time::sleep(Duration::from_millis(50)) => {}
            }
            all.extend(t.poll().await);
        }
    })
    .await
    .expect("transfers still running after 30 s");
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_goes_through_both_ends_with_progress_then_one_end_each() {
    let (_a, b, alice, mut bob) = connected().await;
    let src = scratch("src");
    let body: Vec<u8> = (0..2_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(src.join("report.pdf"), &body).unwrap();
    let mut sending = Transfers::new(FilesPolicy::Ask);
    // Bob's policy takes up to 10 MiB from Alice (Bob's call's peer), into a folder that is
    // not there yet.
    let from_alice = bob.info().peer;
    let mut receiving =
        Transfers::new(FilesPolicy::parse(&[format!("{from_alice}:10M")]).expect("policy"));
    let prepared = transfer::prepare(vec![src.join("report.pdf")])
        .await
        .unwrap();
    assert!(prepared.skipped.is_empty() && prepared.missing.is_empty());
    let started = sending.offer(&alice, prepared.files).await.unwrap();
    assert_eq!((started.files, started.bytes), (1, body.len() as u64));
    // Not accepted yet, so certainly running: its progress, nothing moved.
    let waiting = sending.poll().await;
    assert!(
        matches!(waiting.as_slice(), [TransferEvent::Progress(s)]
            if s.id == started.id && s.outgoing && s.progress.total == body.len() as u64
                && s.progress.bytes == 0),
        "{waiting:?}"
    );
    let (id, offer) = offered(&mut bob).await;
    assert_eq!(
        receiving.offered(&from_alice, id, offer),
        FilesDecision::Accept
    );
    assert_eq!(receiving.pending().count(), 1);
    let dest = scratch("dest").join("not/there/yet");
    let took = receiving.accept(&bob, None, &dest).unwrap();
    assert_eq!(took.id, id);
    assert_eq!(took.folder.as_deref(), Some(dest.as_path()));
    assert_eq!(receiving.pending().count(), 0);
    let (sent, got) = tokio::join!(run_out(&mut sending), run_out(&mut receiving));
    for (events, outgoing) in [(&sent, true), (&got, false)] {
        let ends: Vec<_> = events
            .iter()
            .filter_map(|e| match e {
                TransferEvent::Ended {
                    status,
                    outcome,
                    folder,
                } => Some((status, outcome, folder)),
                TransferEvent::Progress(_) | TransferEvent::CutShort(_) => None,
            })
            .collect();
        assert_eq!(ends.len(), 1, "{events:?}");
        let (status, outcome, folder) = ends[0];
        assert_eq!(status.outgoing, outgoing);
        assert!(
            matches!(outcome, TransferOutcome::Done { .. }),
            "{outcome:?}"
        );
        // The end carries the final count, whatever the polls saw.
        assert_eq!(status.progress.bytes, body.len() as u64);
        assert_eq!(folder.is_some(), !outgoing);
        // No progress after the end.
        assert!(matches!(events.last(), Some(TransferEvent::Ended { .. })));
        // What progress there was never goes backwards.
        let seen: Vec<u64> = events
            .iter()
            .filter_map(|e| match e {
                TransferEvent::Progress(s) => Some(s.progress.bytes),
                TransferEvent::Ended { .. } | TransferEvent::CutShort(_) => None,
            })
            .collect();
        assert!(seen.windows(2).all(|w| w[0] <= w[1]), "{seen:?}");
    }
    assert_eq!(std::fs::read(dest.join("report.pdf")).unwrap(), body);
    // The folders made for it are this user's alone.
    {
        use std::os::unix::fs::PermissionsExt;
        for d in [dest.as_path(), dest.parent().unwrap()] {
            let mode = std::fs::metadata(d).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o700, "{}", d.display());
        }
    }
    assert!(!sending.busy() && !receiving.busy());
    alice.hangup();
    drop(b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declined_offers_end_as_declined_and_answers_need_an_offer() {
    let (_a, _b, alice, mut bob) = connected().await;
    let src = scratch("src2");
    std::fs::write(src.join("x.bin"), vec![9u8; 5000]).unwrap();
    let mut sending = Transfers::new(FilesPolicy::Ask);
    let mut receiving = Transfers::new(FilesPolicy::Nobody);
    // Nothing offered yet: nothing to answer, and an empty offer is refused here.
    assert!(matches!(
        receiving.accept(&bob, None, &src),
        Err(AnswerError::NoOffer)
    ));
    assert!(matches!(
        sending.offer(&alice, Vec::new()).await,
        Err(OfferError::Nothing)
    ));
    let files = transfer::prepare(vec![src.join("x.bin")])
        .await
        .unwrap()
        .files;
    sending.offer(&alice, files).await.unwrap();
    let (id, offer) = offered(&mut bob).await;
    assert_eq!(
        receiving.offered(&bob.info().peer, id, offer),
        FilesDecision::Decline
    );
    assert_eq!(receiving.decline(&bob, Some(id)).await.unwrap(), id);
    assert!(matches!(
        receiving.decline(&bob, Some(id)).await,
        Err(AnswerError::NoOffer)
    ));
    let events = run_out(&mut sending).await;
    assert!(
        matches!(
            events.last(),
            Some(TransferEvent::Ended {
                outcome: TransferOutcome::Declined,
                ..
            })
        ),
        "{events:?}"
    );
    alice.hangup();
}

/// A folder that cannot be made: the error names it, and the offer keeps waiting for
/// another answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unusable_folder_keeps_the_offer_waiting() {
    let (_a, _b, alice, mut bob) = connected().await;
    let src = scratch("src3");
    std::fs::write(src.join("y.bin"), vec![1u8; 3000]).unwrap();
    let blocker = src.join("a-file");
    std::fs::write(&blocker, b"not a folder").unwrap();
    let mut sending = Transfers::new(FilesPolicy::Ask);
    let mut receiving = Transfers::new(FilesPolicy::Ask);
    // Two offers wait; the second is accepted into a folder that cannot be made.
    let mut ids = Vec::new();
    for _ in 0..2 {
        let files = transfer::prepare(vec![src.join("y.bin")])
            .await
            .unwrap()
            .files;
        sending.offer(&alice, files).await.unwrap();
        let (id, offer) = offered(&mut bob).await;
        assert_eq!(
            receiving.offered(&bob.info().peer, id, offer),
            FilesDecision::Ask
        );
        ids.push(id);
    }
    let (first, id) = (ids[0], ids[1]);
    let err = receiving
        .accept(&bob, Some(id), &blocker.join("inside"))
        .unwrap_err();
    assert!(
        matches!(&err, AnswerError::Folder { path, .. } if path.ends_with("a-file/inside")),
        "{err:?}"
    );
    // It waits again, in its place: the oldest is still answered first.
    assert_eq!(
        receiving.pending().map(|(i, _)| i).collect::<Vec<_>>(),
        [first, id]
    );
    assert_eq!(receiving.decline(&bob, None).await.unwrap(), first);
    let dest = scratch("dest3");
    receiving.accept(&bob, Some(id), &dest).unwrap();
    let events = run_out(&mut receiving).await;
    assert!(
        matches!(
            events.last(),
            Some(TransferEvent::Ended {
                outcome: TransferOutcome::Done { .. },
                ..
            })
        ),
        "{events:?}"
    );
    assert_eq!(std::fs::read(dest.join("y.bin")).unwrap(), vec![1u8; 3000]);
    alice.hangup();
}

/// The call ends with a transfer still waiting: given its grace, it is stopped and reported
/// cut short; one that ended in time is reported as it ended; nothing is left running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_end_of_a_call_what_still_runs_is_stopped_and_reported_cut_short() {
    let (_a, _b, alice, mut bob) = connected().await;
    let src = scratch("src4");
    std::fs::write(src.join("slow.bin"), vec![3u8; 4000]).unwrap();
    std::fs::write(src.join("quick.bin"), vec![4u8; 4000]).unwrap();
    let mut sending = Transfers::new(FilesPolicy::Ask);
    let files = transfer::prepare(vec![src.join("quick.bin")])
        .await
        .unwrap()
        .files;
    let quick = sending.offer(&alice, files).await.unwrap();
    let (quick_id, _) = offered(&mut bob).await;
    bob.decline_files(quick_id).await.unwrap();
    // The second offer is never answered.
    let files = transfer::prepare(vec![src.join("slow.bin")])
        .await
        .unwrap()
        .files;
    let slow = sending.offer(&alice, files).await.unwrap();
    let _ = offered(&mut bob).await;
    // The declined one may not have ended yet; the unanswered one is still being sent.
    assert!(sending.running());
    let events = sending.wind_up(Duration::from_secs(1)).await;
    let cut: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            TransferEvent::CutShort(s) => Some(s.id),
            _ => None,
        })
        .collect();
    let ended: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            TransferEvent::Ended {
                status, outcome, ..
            } => Some((status.id, outcome.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(cut, [slow.id], "{events:?}");
    assert_eq!(ended, [(quick.id, TransferOutcome::Declined)], "{events:?}");
    assert!(!sending.busy() && !sending.running());
    alice.hangup();
}

/// A call carries `MAX_TRANSFERS` sends at once: with that many waiting for an answer there
/// is no room (a front end asks before hashing anything) and a further offer is refused;
/// once one has ended there is room again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sends_beyond_the_calls_limit_are_refused_until_one_ends() {
    use extrasafe_net::transfer::MAX_TRANSFERS;
    let (_a, _b, alice, mut bob) = connected().await;
    let src = scratch("src5");
    std::fs::write(src.join("z.bin"), vec![5u8; 1000]).unwrap();
    let mut sending = Transfers::new(FilesPolicy::Ask);
    let mut ids = Vec::new();
    for _ in 0..MAX_TRANSFERS {
        assert!(sending.room().is_ok());
        let files = transfer::prepare(vec![src.join("z.bin")])
            .await
            .unwrap()
            .files;
        sending.offer(&alice, files).await.unwrap();
        ids.push(offered(&mut bob).await.0);
    }
    assert!(matches!(sending.room(), Err(OfferError::TooMany(n)) if n == MAX_TRANSFERS));
    let files = transfer::prepare(vec![src.join("z.bin")])
        .await
        .unwrap()
        .files;
    assert!(matches!(
        sending.offer(&alice, files).await,
        Err(OfferError::TooMany(_))
    ));
    bob.decline_files(ids[0]).await.unwrap();
    tokio::time::timeout(Duration::from_secs(30), sending.next_end())
        .await
        .expect("the declined offer ends");
    assert!(
        sending.room().is_ok(),
        "room again once an offer was declined"
    );
    alice.hangup();
}
