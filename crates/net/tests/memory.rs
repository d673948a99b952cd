//! Memory under a flood of bad connections. A test binary of its own: resident memory is
//! per process, and tests running beside it in the same process would move the numbers.

mod common;

use common::*;
use extrasafe_net::AcceptPolicy;
use quinn::VarInt;

#[tokio::test]
async fn a_flood_of_bad_connections_keeps_memory_bounded() {
    let (_id, target) = node(AcceptPolicy::Anyone).await;
    let t = ticket(&target);
    let a = addr(&target);
    let (ep, _) = raw_client(&extrasafe_net::new_identity(), &t);
    let flood = |n| {
        let (t, ep) = (t.clone(), ep.clone());
        async move {
            for _ in 0..n {
                let me = extrasafe_net::new_identity();
                let client = raw_client_config(&me, &t);
                let conn = ep.connect_with(client, a, "x").unwrap().await.unwrap();
                let (mut s, mut r) = conn.open_bi().await.unwrap();
                let _ = s.write_all(&[0, 1, 0x55]).await; // unknown critical type
                                                          // Read the node's hang-up to the end, then leave.
                let _ = r.read_to_end(4096).await;
                conn.close(VarInt::from_u32(0), b"");
            }
        }
    };
    flood(20).await; // warm up allocator and caches
    let before = rss_kib();
    flood(200).await;
    let first = rss_kib().saturating_sub(before);
    let mid = rss_kib();
    flood(200).await;
    let second = rss_kib().saturating_sub(mid);
    eprintln!("resident memory grew by {first} KiB, then {second} KiB, over two rounds of 200 bad connections");
    // Bounded: the first round may settle caches and closing connections, a second equal
    // round must not add as much again.
    assert!(
        first < 16 * 1024,
        "memory grew by {first} KiB over 200 bad connections"
    );
    assert!(
        second < 4 * 1024,
        "memory kept growing: {second} KiB in the second round"
    );
    still_serves(&target).await;
}
