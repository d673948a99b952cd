//! Pictures as a webcam sends them, for the camera tests here and the call test in
//! `crates/net/tests/video.rs` (which includes this file).

use extrasafe_video::Frame;

/// I420 to a webcam's Motion-JPEG picture: JPEG from YCbCr, its Huffman tables left out as
/// webcams do (they send the standard ones implicitly).
pub fn to_webcam_mjpeg(f: &Frame) -> Vec<u8> {
    let (w, h) = (f.width as usize, f.height as usize);
    let mut ycbcr = Vec::with_capacity(w * h * 3);
    for row in 0..h {
        for x in 0..w {
            let c = (row / 2) * (w / 2) + x / 2;
            ycbcr.extend_from_slice(&[f.y()[row * w + x], f.u()[c], f.v()[c]]);
        }
    }
    let mut jpeg = Vec::new();
    jpeg_encoder::Encoder::new(&mut jpeg, 92)
        .encode(&ycbcr, w as u16, h as u16, jpeg_encoder::ColorType::Ycbcr)
        .unwrap();
    // Drop every DHT segment (FF C4) before the scan.
    let mut out = jpeg[..2].to_vec();
    let mut i = 2;
    while jpeg[i] == 0xFF && jpeg[i + 1] != 0xDA {
        let len = u16::from_be_bytes([jpeg[i + 2], jpeg[i + 3]]) as usize;
        if jpeg[i + 1] != 0xC4 {
            out.extend_from_slice(&jpeg[i..i + 2 + len]);
        }
        i += 2 + len;
    }
    out.extend_from_slice(&jpeg[i..]);
    assert!(!out.windows(2).any(|p| p == [0xFF, 0xC4]), "tables left in");
    out
}
