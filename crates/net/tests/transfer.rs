//! File transfers inside a call, over real UDP sockets on loopback, into real folders.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use extrasafe_core::transfer::receive::StorageProblem;
use extrasafe_net::transfer::{self, TransferFailure, TransferOutcome};
use extrasafe_net::{AcceptPolicy, Blame, Call, CallEvent};

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("es-xfer-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Removes its folders when the test ends, passed or failed (some hold hundreds of MiB).
struct Gone(Vec<PathBuf>);

impl Drop for Gone {
    fn drop(&mut self) {
        for d in &self.0 {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

fn content(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 9) as u8)
        .collect()
}

/// The next offer on `call`, skipping other events.
async fn offer(call: &mut Call) -> (u64, extrasafe_net::core::transfer::offer::ValidOffer) {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), call.next_event())
            .await
            .expect("no offer within 10 s")
        {
            Some(CallEvent::FilesOffered { id, offer }) => return (id, offer),
            Some(CallEvent::Ended(r)) => panic!("call ended: {r:?}"),
            Some(_) => continue,
            None => panic!("call gone"),
        }
    }
}

/// Names of everything under `dir`, relative, sorted (partial files included, so a test sees
/// any left behind).
fn listing(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, at: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(at).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(base, &p, out);
            } else {
                out.push(p.strip_prefix(base).unwrap().display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o777
}

/// Everything under `dir`, folders (with a `/`), links (with their target) and files (with
/// their content), relative, sorted: two snapshots are equal only if nothing changed.
fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    fn walk(base: &Path, at: &Path, out: &mut Vec<(String, Vec<u8>)>) {
        for e in std::fs::read_dir(at).unwrap() {
            let p = e.unwrap().path();
            let rel = p.strip_prefix(base).unwrap().display().to_string();
            let m = std::fs::symlink_metadata(&p).unwrap();
            if m.is_symlink() {
                let to = std::fs::read_link(&p).unwrap();
                out.push((rel, format!("-> {}", to.display()).into_bytes()));
            } else if m.is_dir() {
                out.push((format!("{rel}/"), Vec::new()));
                walk(base, &p, out);
            } else {
                out.push((rel, std::fs::read(&p).unwrap()));
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// The receiver's partial file for content with this root hash.
fn partial_name(root: &[u8; 32]) -> String {
    let hex: String = root[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!(".extrasafe-partial-{hex}")
}

fn mkfifo(path: &Path) -> PathBuf {
    let made = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .expect("running mkfifo");
    assert!(made.success(), "mkfifo {}", path.display());
    path.to_path_buf()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_folder_crosses_verified_and_lands_under_its_names() {
    let (_a, a) = node(AcceptPolicy::Ask).await;
    let (_b, b) = node(AcceptPolicy::Anyone).await;
    let (alice, mut bob) = connected(&a, &b).await;
    let src = scratch("src1");
    std::fs::create_dir_all(src.join("photos/2026")).unwrap();
    let big = content(3 * 1024 * 1024 + 123, 1);
    std::fs::write(src.join("photos/2026/big.bin"), &big).unwrap();
    std::fs::write(src.join("photos/empty"), b"").unwrap();
    std::fs::write(src.join("notes.txt"), b"hello").unwrap();
    let dest = scratch("dest1");
    let _gone = Gone(vec![src.clone(), dest.clone()]);
    // Bob already has a notes.txt: it must survive.
    std::fs::write(dest.join("notes.txt"), b"mine").unwrap();

    // A mistyped name among them is left out, named; the rest goes.
    let prepared = transfer::prepare(vec![
        src.join("photos"),
        src.join("notse.txt"),
        src.join("notes.txt"),
    ])
    .await
    .unwrap();
    assert!(prepared.skipped.is_empty());
    assert_eq!(prepared.missing, vec![src.join("notse.txt")]);
    // With nothing else to send, that name is the error (and nothing is offered).
    match transfer::prepare(vec![src.join("notse.txt")]).await {
        Err(transfer::PrepareError::Io { path, source }) => {
            assert_eq!(path, src.join("notse.txt"));
            assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
        }
        other => panic!("{other:?}"),
    }
    let sending = alice.send_files(prepared.files).await.unwrap();
    let (id, offer) = offer(&mut bob).await;
    assert_eq!(offer.files.len(), 3);
    assert_eq!(offer.total, big.len() as u64 + 5);
    let receiving = bob.accept_files(id, dest.clone()).unwrap();
    let (sent, got) = tokio::join!(sending.finished(), receiving.finished());
    assert_eq!(sent, TransferOutcome::Done { saved: vec![] });
    let TransferOutcome::Done { saved } = got else {
        panic!("{got:?}")
    };
    assert_eq!(saved.len(), 3);
    assert_eq!(
        std::fs::read(dest.join("photos/2026/big.bin")).unwrap(),
        big
    );
    assert_eq!(std::fs::read(dest.join("notes.txt")).unwrap(), b"mine");
    assert_eq!(std::fs::read(dest.join("notes (1).txt")).unwrap(), b"hello");
    assert_eq!(
        listing(&dest),
        [
            "notes (1).txt",
            "notes.txt",
            "photos/2026/big.bin",
            "photos/empty"
        ]
    );
    // Ours only: files 0600, the folders the transfer created 0700.
    for f in ["notes (1).txt", "photos/2026/big.bin", "photos/empty"] {
        assert_eq!(mode(&dest.join(f)), 0o600, "{f}");
    }
    for d in ["photos", "photos/2026"] {
        assert_eq!(mode(&dest.join(d)), 0o700, "{d}");
    }
    alice.hangup();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declining_writes_nothing() {
    let (_a, a) = node(AcceptPolicy::Ask).await;
    let (_b, b) = node(AcceptPolicy::Anyone).await;
    let (alice, mut bob) = connected(&a, &b).await;
    let src = scratch("src2");
    std::fs::write(src.join("x.bin"), content(1000, 2)).unwrap();
    let dest = scratch("dest2");
    let _gone = Gone(vec![src.clone(), dest.clone()]);
    let files = transfer::prepare(vec![src.join("x.bin")])
        .await
        .unwrap()
        .files;
    let sending = alice.send_files(files).await.unwrap();
    let (id, _) = offer(&mut bob).await;
    bob.decline_files(id).await.unwrap();
    assert_eq!(sending.finished().await, TransferOutcome::Declined);
    assert!(listing(&dest).is_empty());
    alice.hangup();
}

/// A file altered after it was offered (as a tampering sender would send it): the receiver
/// catches the bad chunk when it arrives, says which file, and nothing appears under its name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn altered_or_short_data_never_appears_under_the_final_name() {
    let (_a, a) = node(AcceptPolicy::Ask).await;
    let (_b, b) = node(AcceptPolicy::Anyone).await;
    let (alice, mut bob) = connected(&a, &b).await;
    for (case, alter) in [
        (
            "flipped",
            Box::new(|p: &Path| {
                let mut d = std::fs::read(p).unwrap();
                d[300_000] ^= 0x01;
                std::fs::write(p, d).unwrap();
            }) as Box<dyn Fn(&Path)>,
        ),
        (
            "short",
            Box::new(|p: &Path| {
                let d = std::fs::read(p).unwrap();
                std::fs::write(p, &d[..d.len() - 10]).unwrap();
            }),
        ),
    ] {
        let src = scratch(&format!("src3{case}"));
        let dest = scratch(&format!("dest3{case}"));
        let _gone = Gone(vec![src.clone(), dest.clone()]);
        let file = src.join("doc.bin");
        std::fs::write(&file, content(600_000, 3)).unwrap();
        let files = transfer::prepare(vec![file.clone()]).await.unwrap().files;
        alter(&file);
        let sending = alice.send_files(files).await.unwrap();
        let (id, _) = offer(&mut bob).await;
        let receiving = bob.accept_files(id, dest.clone()).unwrap();
        let (sent, got) = tokio::join!(sending.finished(), receiving.finished());
        let TransferOutcome::Failed(why) = &got else {
            panic!("{case}: {got:?}")
        };
        eprintln!("{case}: receiver says: {why}; sender: {sent:?}");
        assert!(why.to_string().contains("doc.bin"), "{case}: {why}");
        // The data is the sender's fault, and the sender is told its data was refused.
        assert_eq!(why.blame(), Blame::Peer, "{case}: {why:?}");
        assert!(
            matches!(sent, TransferOutcome::Failed(TransferFailure::DataRefused)),
            "{case}: {sent:?}"
        );
        assert!(!dest.join("doc.bin").exists(), "{case}");
        // Only a hidden partial with verified data may remain (for a later resume).
        for name in listing(&dest) {
            assert!(name.starts_with(".extrasafe-partial-"), "{case}: {name}");
        }
    }
    alice.hangup();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn either_side_can_cancel_cleanly() {
    let (_a, a) = node(AcceptPolicy::Ask).await;
    let (_b, b) = node(AcceptPolicy::Anyone).await;
    let (alice, mut bob) = connected(&a, &b).await;
    let src = scratch("src4");
    let _src = Gone(vec![src.clone()]);
    std::fs::write(src.join("huge.bin"), content(200 * 1024 * 1024, 4)).unwrap();
    for receiver_cancels in [false, true] {
        let dest = scratch(&format!("dest4{receiver_cancels}"));
        let _gone = Gone(vec![dest.clone()]);
        let files = transfer::prepare(vec![src.join("huge.bin")])
            .await
            .unwrap()
            .files;
        let sending = alice.send_files(files).await.unwrap();
        let (id, _) = offer(&mut bob).await;
        let receiving = bob.accept_files(id, dest.clone()).unwrap();
        let mut watch = receiving.watch();
        watch.wait_for(|p| p.bytes > 1024 * 1024).await.unwrap();
        if receiver_cancels {
            receiving.cancel();
        } else {
            sending.cancel();
        }
        let (sent, got) = tokio::join!(sending.finished(), receiving.finished());
        assert_eq!(
            (sent, got),
            (
                TransferOutcome::Cancelled {
                    by_peer: receiver_cancels
                },
                TransferOutcome::Cancelled {
                    by_peer: !receiver_cancels
                }
            )
        );
        assert!(listing(&dest).is_empty(), "{:?}", listing(&dest));
    }
    // The call goes on: chat still works.
    alice.send_chat("still here").await.unwrap();
    alice.hangup();
}

/// A transfer cut off (the call dropped mid-way) resumes from its verified chunks when the
/// same content is offered again in a later call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_transfer_resumes_in_a_later_call() {
    let (_a, a) = node(AcceptPolicy::Ask).await;
    let (_b, b) = node(AcceptPolicy::Anyone).await;
    let src = scratch("src5");
    let data = content(64 * 1024 * 1024, 5);
    std::fs::write(src.join("video.bin"), &data).unwrap();
    let dest = scratch("dest5");
    let _gone = Gone(vec![src.clone(), dest.clone()]);
    let files = transfer::prepare(vec![src.join("video.bin")])
        .await
        .unwrap()
        .files;

    let (alice, mut bob) = connected(&a, &b).await;
    let sending = alice.send_files(files.clone()).await.unwrap();
    let (id, _) = offer(&mut bob).await;
    let receiving = bob.accept_files(id, dest.clone()).unwrap();
    let mut watch = receiving.watch();
    watch.wait_for(|p| p.bytes > 8 * 1024 * 1024).await.unwrap();
    alice.hangup();
    let got = receiving.finished().await;
    assert!(matches!(got, TransferOutcome::Failed(_)), "{got:?}");
    let _ = sending.finished().await;
    assert!(!dest.join("video.bin").exists());
    until_idle(&b).await;

    let (alice, mut bob) = connected(&a, &b).await;
    let sending = alice.send_files(files).await.unwrap();
    let (id, _) = offer(&mut bob).await;
    let receiving = bob.accept_files(id, dest.clone()).unwrap();
    let mut watch = receiving.watch();
    let (_, got) = tokio::join!(sending.finished(), receiving.finished());
    assert!(matches!(got, TransferOutcome::Done { .. }), "{got:?}");
    // At least the 8 MiB verified before the cut were not sent again.
    let resumed = watch.borrow_and_update().resumed;
    assert!(resumed >= 8 * 1024 * 1024, "resumed {resumed}");
    assert_eq!(std::fs::read(dest.join("video.bin")).unwrap(), data);
    assert_eq!(listing(&dest), ["video.bin"]);
    alice.hangup();
}

/// Ten thousand small files go in one stream, without a round trip each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_small_files_in_one_go() {
    let (_a, a) = node(AcceptPolicy::Ask).await;
    let (_b, b) = node(AcceptPolicy::Anyone).await;
    let (alice, mut bob) = connected(&a, &b).await;
    let src = scratch("src6");
    std::fs::create_dir_all(src.join("many")).unwrap();
    for i in 0..10_000 {
        std::fs::write(
            src.join(format!("many/f{i:05}.txt")),
            content(1024, i as u8),
        )
        .unwrap();
    }
    let dest = scratch("dest6");
    let _gone = Gone(vec![src.clone(), dest.clone()]);
    let started = std::time::Instant::now();
    let files = transfer::prepare(vec![src.join("many")])
        .await
        .unwrap()
        .files;
    let sending = alice.send_files(files).await.unwrap();
    let (id, offer) = offer(&mut bob).await;
    assert_eq!(offer.files.len(), 10_000);
    let receiving = bob.accept_files(id, dest.clone()).unwrap();
    let (sent, got) = tokio::join!(sending.finished(), receiving.finished());
    let took = started.elapsed();
    eprintln!("10000 files of 1 KiB: {took:?}");
    assert_eq!(sent, TransferOutcome::Done { saved: vec![] });
    assert!(matches!(got, TransferOutcome::Done { ref saved } if saved.len() == 10_000));
    assert_eq!(
        std::fs::read(dest.join("many/f01234.txt")).unwrap(),
        content(1024, 1234u32 as u8)
    );
    // One stream and batched syncs: a sync per file alone would take far longer.
    assert!(took < Duration::from_secs(30), "{took:?}");
    alice.hangup();
}

/// Hidden names (an autostart entry, an SSH key) and the receiver's own partial-file names are
/// declined as the offer arrives: the sender hears "declined", the receiver is never asked,
/// and nothing is created. The next, plain offer is the first one the receiver sees.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hidden_and_reserved_names_are_declined_before_anything_is_created() {
    let (_a, a) = node(AcceptPolicy::Ask).await;
    let (_b, b) = node(AcceptPolicy::Anyone).await;
    let (alice, mut bob) = connected(&a, &b).await;
    let src = scratch("src7");
    let dest = scratch("dest7");
    let _gone = Gone(vec![src.clone(), dest.clone()]);
    std::fs::write(src.join("x.bin"), content(1000, 7)).unwrap();
    let files = transfer::prepare(vec![src.join("x.bin")])
        .await
        .unwrap()
        .files;
    let partial = partial_name(&files[0].prepared.root);
    for name in [
        ".config/autostart/x.desktop",
        ".ssh/authorized_keys",
        "photos/.hidden.jpg",
        partial.as_str(),
    ] {
        let mut hostile = files.clone();
        hostile[0].prepared.path = name.to_string();
        let sending = alice.send_files(hostile).await.unwrap();
        assert_eq!(
            sending.finished().await,
            TransferOutcome::Declined,
            "{name}"
        );
    }
    assert!(snapshot(&dest).is_empty());
    let sending = alice.send_files(files).await.unwrap();
    let (id, offer) = offer(&mut bob).await;
    assert_eq!(offer.files.len(), 1);
    assert_eq!(offer.files[0].path.as_str(), "x.bin");
    let receiving = bob.accept_files(id, dest.clone()).unwrap();
    let (sent, got) = tokio::join!(sending.finished(), receiving.finished());
    assert_eq!(sent, TransferOutcome::Done { saved: vec![] });
    assert!(matches!(got, TransferOutcome::Done { .. }), "{got:?}");
    assert_eq!(snapshot(&dest), [("x.bin".to_string(), content(1000, 7))]);
    alice.hangup();
}

/// The receiver's disk cannot take the file (here a folder sits where its partial file goes):
/// the receiver's failure is typed as its own storage's, and the sender is told the receiver
/// could not save, not that its data was refused. Nothing appears under the final name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_cannot_save_is_not_reported_as_bad_data() {
    let (_a, a) = node(AcceptPolicy::Ask).await;
    let (_b, b) = node(AcceptPolicy::Anyone).await;
    let (alice, mut bob) = connected(&a, &b).await;
    let src = scratch("src10");
    let dest = scratch("dest10");
    let _gone = Gone(vec![src.clone(), dest.clone()]);
    std::fs::write(src.join("x.bin"), content(50_000, 10)).unwrap();
    let files = transfer::prepare(vec![src.join("x.bin")])
        .await
        .unwrap()
        .files;
    let blocker = dest.join(partial_name(&files[0].prepared.root));
    std::fs::create_dir(&blocker).unwrap();
    std::fs::write(blocker.join("mine"), b"the person's own").unwrap();
    let sending = alice.send_files(files).await.unwrap();
    let (id, _) = offer(&mut bob).await;
    let receiving = bob.accept_files(id, dest.clone()).unwrap();
    let (sent, got) = tokio::time::timeout(Duration::from_secs(30), async {
        tokio::join!(sending.finished(), receiving.finished())
    })
    .await
    .expect("the transfer never ended");
    eprintln!("receiver: {got:?}; sender: {sent:?}");
    let TransferOutcome::Failed(TransferFailure::Storage(why)) = &got else {
        panic!("not a storage failure: {got:?}")
    };
    assert_eq!(why.problem, StorageProblem::InTheWay, "{why:?}");
    assert_eq!(TransferFailure::Storage(why.clone()).blame(), Blame::Local);
    assert_eq!(
        sent,
        TransferOutcome::Failed(TransferFailure::PeerCannotSave)
    );
    assert_eq!(TransferFailure::PeerCannotSave.blame(), Blame::Peer);
    assert!(!dest.join("x.bin").exists());
    // What was in the way is untouched.
    assert_eq!(
        std::fs::read(blocker.join("mine")).unwrap(),
        b"the person's own"
    );
    alice.hangup();
}

/// A receiver that allows hidden names gets them (private like any file); its own partial
/// names stay refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hidden_names_arrive_only_when_the_receiver_allows_them() {
    let (_a, a) = node(AcceptPolicy::Ask).await;
    let (_b, b) = node(AcceptPolicy::Anyone).await;
    let (alice, mut bob) = connected(&a, &b).await;
    bob.allow_hidden_files(true);
    let src = scratch("src9");
    let dest = scratch("dest9");
    let _gone = Gone(vec![src.clone(), dest.clone()]);
    std::fs::write(src.join("x.desktop"), b"[Desktop Entry]").unwrap();
    let files = transfer::prepare(vec![src.join("x.desktop")])
        .await
        .unwrap()
        .files;
    let mut reserved = files.clone();
    reserved[0].prepared.path = partial_name(&files[0].prepared.root);
    let sending = alice.send_files(reserved).await.unwrap();
    assert_eq!(sending.finished().await, TransferOutcome::Declined);
    let mut hidden = files;
    hidden[0].prepared.path = ".config/autostart/x.desktop".into();
    let sending = alice.send_files(hidden).await.unwrap();
    let (id, offer) = offer(&mut bob).await;
    assert_eq!(offer.files[0].path.as_str(), ".config/autostart/x.desktop");
    let receiving = bob.accept_files(id, dest.clone()).unwrap();
    let (sent, got) = tokio::join!(sending.finished(), receiving.finished());
    assert_eq!(sent, TransferOutcome::Done { saved: vec![] });
    assert!(matches!(got, TransferOutcome::Done { .. }), "{got:?}");
    let saved = dest.join(".config/autostart/x.desktop");
    assert_eq!(std::fs::read(&saved).unwrap(), b"[Desktop Entry]");
    assert_eq!(mode(&saved), 0o600);
    assert_eq!(mode(&dest.join(".config")), 0o700);
    assert_eq!(mode(&dest.join(".config/autostart")), 0o700);
    alice.hangup();
}

/// Mid-transfer, someone with access to the download folder swaps in a link to a folder
/// outside: for the partial file being written, or for the folder the files go into. The
/// sender reads the second file from a pipe the test feeds, so the swap happens at a known
/// point (1 MiB of it verified and on disk), with no timing involved. The transfer fails,
/// and nothing outside the download folder changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_swapped_in_during_a_transfer_leaves_everything_outside_untouched() {
    use std::io::Write;
    let (_a, a) = node(AcceptPolicy::Ask).await;
    let (_b, b) = node(AcceptPolicy::Anyone).await;
    let (alice, mut bob) = connected(&a, &b).await;
    for case in ["partial", "folder"] {
        let src = scratch(&format!("src8{case}"));
        let dest = scratch(&format!("dest8{case}"));
        let canary = scratch(&format!("canary8{case}"));
        let _gone = Gone(vec![src.clone(), dest.clone(), canary.clone()]);
        std::fs::write(canary.join("victim"), b"canary").unwrap();
        std::fs::create_dir(canary.join("sub")).unwrap();
        let before = snapshot(&canary);
        std::fs::create_dir(src.join("sub")).unwrap();
        std::fs::write(src.join("sub/one.bin"), content(1000, 8)).unwrap();
        let two = content(2 * 1024 * 1024 + 77, 9);
        std::fs::write(src.join("two.bin"), &two).unwrap();
        // The person's own folder `sub` is there already.
        std::fs::create_dir(dest.join("sub")).unwrap();
        let mut files = transfer::prepare(vec![src.join("sub"), src.join("two.bin")])
            .await
            .unwrap()
            .files;
        assert_eq!(files[1].prepared.path, "two.bin");
        let partial = dest.join(partial_name(&files[1].prepared.root));
        files[1].source = mkfifo(&src.join("two.pipe"));
        // Read and write, so opening never waits for the other end.
        let mut pipe = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&files[1].source)
            .unwrap();
        let sending = alice.send_files(files).await.unwrap();
        let (id, _) = offer(&mut bob).await;
        let receiving = bob.accept_files(id, dest.clone()).unwrap();
        let mut watch = receiving.watch();
        // The sender sends in 1 MiB blocks: the first goes as soon as it is in the pipe.
        let first = two[..1 << 20].to_vec();
        pipe = tokio::task::spawn_blocking(move || {
            pipe.write_all(&first).unwrap();
            pipe
        })
        .await
        .unwrap();
        tokio::time::timeout(
            Duration::from_secs(30),
            watch.wait_for(|p| p.bytes >= 1000 + (1 << 20)),
        )
        .await
        .expect("the first MiB of two.bin never arrived")
        .unwrap();
        assert!(partial.is_file(), "{case}: two.bin is being written");
        match case {
            "partial" => {
                std::fs::remove_file(&partial).unwrap();
                std::os::unix::fs::symlink(canary.join("victim"), &partial).unwrap();
            }
            _ => {
                std::fs::rename(dest.join("sub"), dest.join("sub-mine")).unwrap();
                std::os::unix::fs::symlink(canary.join("sub"), dest.join("sub")).unwrap();
            }
        }
        let rest = two[1 << 20..].to_vec();
        tokio::task::spawn_blocking(move || {
            pipe.write_all(&rest).unwrap();
            // Closing it ends the file for the sender.
            drop(pipe);
        })
        .await
        .unwrap();
        let (sent, got) = tokio::time::timeout(Duration::from_secs(30), async {
            tokio::join!(sending.finished(), receiving.finished())
        })
        .await
        .expect("the transfer never ended");
        eprintln!("{case}: receiver: {got:?}; sender: {sent:?}");
        let TransferOutcome::Failed(why) = &got else {
            panic!("{case}: {got:?}")
        };
        let want = if case == "partial" {
            "replaced"
        } else {
            "not a folder"
        };
        assert!(why.to_string().contains(want), "{case}: {why}");
        let TransferFailure::Storage(storage) = why else {
            panic!("{case}: not a storage failure: {why:?}")
        };
        let kind = if case == "partial" {
            StorageProblem::Changed
        } else {
            StorageProblem::InTheWay
        };
        assert_eq!(storage.problem, kind, "{case}: {storage:?}");
        assert_eq!(why.blame(), Blame::Local, "{case}");
        // The sender learns the receiver could not save, not that its data was bad.
        assert!(
            matches!(
                sent,
                TransferOutcome::Failed(TransferFailure::PeerCannotSave)
            ),
            "{case}: {sent:?}"
        );
        assert_eq!(
            snapshot(&canary),
            before,
            "{case}: something outside changed"
        );
        assert!(
            std::fs::symlink_metadata(dest.join("two.bin")).is_err(),
            "{case}"
        );
        if case == "folder" {
            assert!(snapshot(&dest.join("sub-mine")).is_empty());
        } else {
            assert_eq!(
                std::fs::read(dest.join("sub/one.bin")).unwrap(),
                content(1000, 8)
            );
        }
    }
    alice.hangup();
}
