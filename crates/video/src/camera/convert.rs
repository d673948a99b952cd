//! Camera pictures to I420, the encoder's format: YUYV (4:2:2 packed), NV12 and Motion-JPEG.
//! Every function takes the buffer as the driver filled it (possibly short or damaged: a USB
//! camera drops bytes under load) and answers with an error rather than a panic.

use crate::frame::{i420_len, Frame};
use crate::VideoError;

fn bad(what: impl std::fmt::Display) -> VideoError {
    VideoError::Source(format!("camera: {what}"))
}

/// YUYV 4:2:2 (Y0 U Y1 V per two pixels) to I420: chroma of each pair of rows averaged.
/// `stride`: bytes from one row to the next (at least `2 * w`).
pub fn yuyv_to_i420(buf: &[u8], w: usize, h: usize, stride: usize) -> Result<Frame, VideoError> {
    let need = stride
        .checked_mul(h.max(1) - 1)
        .and_then(|n| n.checked_add(w.checked_mul(2)?));
    if !sane(w, h) || stride < 2 * w || need.is_none_or(|n| buf.len() < n) {
        return Err(bad(format!(
            "a short or odd YUYV picture ({} bytes for {w}x{h}, {stride} a row)",
            buf.len()
        )));
    }
    let mut data = vec![0u8; i420_len(w as u32, h as u32)];
    let (y, uv) = data.split_at_mut(w * h);
    let (u, v) = uv.split_at_mut((w / 2) * (h / 2));
    for row in 0..h {
        let line = &buf[row * stride..row * stride + 2 * w];
        for (x, px) in line.chunks_exact(4).enumerate() {
            y[row * w + 2 * x] = px[0];
            y[row * w + 2 * x + 1] = px[2];
            if row % 2 == 0 {
                let below = &buf[(row + 1) * stride + 4 * x..];
                u[(row / 2) * (w / 2) + x] = ((px[1] as u16 + below[1] as u16) / 2) as u8;
                v[(row / 2) * (w / 2) + x] = ((px[3] as u16 + below[3] as u16) / 2) as u8;
            }
        }
    }
    Ok(Frame {
        width: w as u32,
        height: h as u32,
        data,
    })
}

/// NV12 (a Y plane, then one plane of U and V interleaved at half size) to I420.
/// `stride`: bytes per row of the Y plane (the UV plane has the same).
pub fn nv12_to_i420(buf: &[u8], w: usize, h: usize, stride: usize) -> Result<Frame, VideoError> {
    let need = h
        .checked_add(h / 2)
        .and_then(|rows| stride.checked_mul(rows));
    if !sane(w, h) || stride < w || need.is_none_or(|n| buf.len() < n) {
        return Err(bad(format!(
            "a short or odd NV12 picture ({} bytes for {w}x{h}, {stride} a row)",
            buf.len()
        )));
    }
    let mut data = vec![0u8; i420_len(w as u32, h as u32)];
    let (y, uv) = data.split_at_mut(w * h);
    let (u, v) = uv.split_at_mut((w / 2) * (h / 2));
    for row in 0..h {
        y[row * w..(row + 1) * w].copy_from_slice(&buf[row * stride..row * stride + w]);
    }
    let chroma = &buf[stride * h..];
    for row in 0..h / 2 {
        let line = &chroma[row * stride..row * stride + w];
        for (x, pair) in line.chunks_exact(2).enumerate() {
            u[row * (w / 2) + x] = pair[0];
            v[row * (w / 2) + x] = pair[1];
        }
    }
    Ok(Frame {
        width: w as u32,
        height: h as u32,
        data,
    })
}

/// I420 as the driver gives it (`YU12`), copied out of the driver's buffer.
pub fn i420_copy(buf: &[u8], w: usize, h: usize) -> Result<Frame, VideoError> {
    if !sane(w, h) {
        return Err(bad(format!("an I420 picture of {w}x{h}")));
    }
    let need = i420_len(w as u32, h as u32);
    let data = buf
        .get(..need)
        .ok_or_else(|| {
            bad(format!(
                "a short I420 picture ({} of {need} bytes)",
                buf.len()
            ))
        })?
        .to_vec();
    Ok(Frame {
        width: w as u32,
        height: h as u32,
        data,
    })
}

/// One Motion-JPEG picture to I420 (zune-jpeg, pure Rust; the Huffman tables that webcams
/// leave out are the standard ones, which it fills in). A picture of another size than the
/// one agreed, or a damaged one, is an error: the caller skips it.
pub fn mjpeg_to_i420(buf: &[u8], w: usize, h: usize) -> Result<Frame, VideoError> {
    use zune_jpeg::zune_core::bytestream::ZCursor;
    use zune_jpeg::zune_core::colorspace::ColorSpace;
    use zune_jpeg::zune_core::options::DecoderOptions;
    let options = DecoderOptions::default()
        .jpeg_set_out_colorspace(ColorSpace::YCbCr)
        // A cut picture is an error, not one padded with grey.
        .set_strict_mode(true)
        .set_max_width(w.max(16) + 16)
        .set_max_height(h.max(16) + 16);
    // Webcams leave the Huffman tables out and mark the picture "AVI1", which tells the
    // decoder to use the standard ones; some leave the mark out too. Such a picture gets the
    // mark.
    let marked;
    let buf = if defines_tables(buf) {
        buf
    } else {
        marked = with_avi1_mark(buf);
        &marked[..]
    };
    let mut dec = zune_jpeg::JpegDecoder::new_with_options(ZCursor::new(buf), options);
    let px = dec
        .decode()
        .map_err(|e| bad(format!("a damaged Motion-JPEG picture ({e:?})")))?;
    let info = dec
        .info()
        .ok_or_else(|| bad("a Motion-JPEG picture without a size"))?;
    let (iw, ih) = (usize::from(info.width), usize::from(info.height));
    // A little larger than agreed (1920x1088 for 1920x1080: whole 16-pixel blocks) is cut to
    // size; smaller, or much larger, is refused.
    if iw < w || ih < h || iw > w + 16 || ih > h + 16 || px.len() < iw * ih * 3 || !sane(w, h) {
        return Err(bad(format!(
            "a Motion-JPEG picture of {iw}x{ih} where {w}x{h} was agreed"
        )));
    }
    // YCbCr 4:4:4, interleaved: luma as it is, chroma averaged over each 2x2 block.
    let mut data = vec![0u8; i420_len(w as u32, h as u32)];
    let (y, uv) = data.split_at_mut(w * h);
    let (u, v) = uv.split_at_mut((w / 2) * (h / 2));
    for row in 0..h {
        for x in 0..w {
            y[row * w + x] = px[(row * iw + x) * 3];
        }
    }
    for row in 0..h / 2 {
        for x in 0..w / 2 {
            let at = |r: usize, c: usize, k: usize| u16::from(px[(r * iw + c) * 3 + k]);
            let (r0, c0) = (2 * row, 2 * x);
            let avg = |k| {
                ((at(r0, c0, k)
                    + at(r0, c0 + 1, k)
                    + at(r0 + 1, c0, k)
                    + at(r0 + 1, c0 + 1, k)
                    + 2)
                    / 4) as u8
            };
            u[row * (w / 2) + x] = avg(1);
            v[row * (w / 2) + x] = avg(2);
        }
    }
    Ok(Frame {
        width: w as u32,
        height: h as u32,
        data,
    })
}

/// Even, non-zero and no larger than 8K: what a picture from a camera can be.
fn sane(w: usize, h: usize) -> bool {
    w > 0 && h > 0 && w.is_multiple_of(2) && h.is_multiple_of(2) && w <= 8192 && h <= 8192
}

/// The picture has a DHT segment (Huffman tables) or an "AVI1" mark before its scan.
fn defines_tables(jpeg: &[u8]) -> bool {
    let mut i = 2;
    while i + 4 <= jpeg.len() && jpeg[i] == 0xFF {
        let marker = jpeg[i + 1];
        let len = usize::from(u16::from_be_bytes([jpeg[i + 2], jpeg[i + 3]]));
        match marker {
            0xC4 => return true,
            0xE0 if jpeg.get(i + 4..i + 9) == Some(b"AVI1\0") => return true,
            0xDA => return false,
            _ => {}
        }
        i += 2 + len;
    }
    false
}

/// The picture with an APP0 "AVI1" segment right after its start marker.
fn with_avi1_mark(jpeg: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(jpeg.len() + 16);
    out.extend_from_slice(jpeg.get(..2).unwrap_or(&[]));
    out.extend_from_slice(&[0xFF, 0xE0, 0x00, 0x10]);
    out.extend_from_slice(b"AVI1\0");
    out.extend_from_slice(&[0u8; 9]);
    out.extend_from_slice(jpeg.get(2..).unwrap_or(&[]));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yuyv_and_nv12_convert_and_short_buffers_are_errors() {
        // 4×2 pixels: Y 10..17, U 100/120, V 200/220 averaged over the two rows.
        let buf = [
            10, 100, 11, 200, 12, 101, 13, 201, 14, 120, 15, 220, 16, 121, 17, 221,
        ];
        let f = yuyv_to_i420(&buf, 4, 2, 8).unwrap();
        assert_eq!(f.y(), &[10, 11, 12, 13, 14, 15, 16, 17]);
        assert_eq!(f.u(), &[110, 111]);
        assert_eq!(f.v(), &[210, 211]);
        assert!(yuyv_to_i420(&buf[..15], 4, 2, 8).is_err());
        assert!(yuyv_to_i420(&buf, 3, 2, 8).is_err());
        // NV12 4×2 with a 6-byte stride (padding 9s).
        let nv12 = [
            1, 2, 3, 4, 9, 9, //
            5, 6, 7, 8, 9, 9, //
            50, 60, 51, 61, 9, 9,
        ];
        let f = nv12_to_i420(&nv12, 4, 2, 6).unwrap();
        assert_eq!(f.y(), &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(f.u(), &[50, 51]);
        assert_eq!(f.v(), &[60, 61]);
        assert!(nv12_to_i420(&nv12[..17], 4, 2, 6).is_err());
        // Sizes a broken driver could report: errors, never an overflow or a panic.
        assert!(yuyv_to_i420(&buf, 4, 2, usize::MAX).is_err());
        assert!(nv12_to_i420(&nv12, 4, usize::MAX - 1, 6).is_err());
        assert!(yuyv_to_i420(&buf, 0, 0, 8).is_err());
        assert!(i420_copy(&[0; 12], 1 << 20, 2).is_err());
        assert!(i420_copy(&[0; 11], 4, 2).is_err());
        assert_eq!(i420_copy(&[7; 12], 4, 2).unwrap().data.len(), 12);
    }

    #[test]
    fn damaged_motion_jpeg_is_an_error_not_a_panic() {
        for junk in [
            &[][..],
            &[0xFF, 0xD8][..],
            &[0xFF, 0xD8, 0xFF, 0xDB, 0, 67, 0][..],
        ] {
            assert!(mjpeg_to_i420(junk, 64, 48).is_err());
        }
    }
}
