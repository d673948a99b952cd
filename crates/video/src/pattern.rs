//! The built-in test picture: moving bars and a moving square (so the encoder has motion to
//! code), the frame number and capture time in large digits for a person, and the same two
//! numbers as two rows of black and white blocks for a program. The blocks survive
//! compression and downscaling, so the receiving end can read which frame it shows and how
//! old it is (glass-to-glass latency), and can draw the exact reference to measure quality.

use crate::frame::{i420_len, Frame};

/// Blocks per code row: 32 bits of value and 8 of check.
const CODE_BLOCKS: u32 = 40;

/// 5×7 digits, one row per byte, bit 4 leftmost.
const DIGITS: [[u8; 7]; 11] = [
    [0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E],
    [0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E],
    [0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F],
    [0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E],
    [0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02],
    [0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E],
    [0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E],
    [0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08],
    [0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E],
    [0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C],
    [0x00, 0x00, 0x00, 0x00, 0x00, 0x0C, 0x0C], // '.'
];

/// Draws frame `index` captured at `stamp_ms` (milliseconds on a clock both ends share,
/// modulo 2³²) at `width`×`height` (even). The same arguments always give the same picture.
pub fn draw(width: u32, height: u32, index: u32, stamp_ms: u32) -> Frame {
    let (w, h) = (width as usize, height as usize);
    let mut data = vec![0u8; i420_len(width, height)];
    let shift = index as usize * 4;
    {
        let y = &mut data[..w * h];
        for row in 0..h {
            for col in 0..w {
                // Diagonal bars drifting right, a gradient down.
                let bar = ((col + shift + row / 2) / 40) % 2;
                y[row * w + col] = (60 + bar * 90 + row * 60 / h.max(1)) as u8;
            }
        }
        // A square bouncing across the upper half.
        let side = (h / 6).max(4);
        let span = w.saturating_sub(side).max(1);
        let pos = (index as usize * 7) % (2 * span);
        let x0 = if pos < span { pos } else { 2 * span - pos };
        let y0 = h / 8;
        for row in y0..(y0 + side).min(h) {
            for col in x0..(x0 + side).min(w) {
                y[row * w + col] = 235;
            }
        }
        let scale = (w / 160).max(1);
        let text_y = h / 2 - 8 * scale;
        draw_number(y, w, h, scale, scale * 4, text_y, &index.to_string());
        let t = format!("{}.{:03}", stamp_ms / 1000, stamp_ms % 1000);
        draw_number(y, w, h, scale, scale * 4, text_y + 10 * scale, &t);
        code_row(y, w, h, 0, stamp_ms);
        code_row(y, w, h, 1, index);
    }
    // Colour: a slow tint, so the chroma planes carry something too.
    let (cw, ch) = (w / 2, h / 2);
    let (u, v) = data[w * h..].split_at_mut(cw * ch);
    for row in 0..ch {
        for col in 0..cw {
            u[row * cw + col] = (128 + (col * 64 / cw.max(1)) as i32 - 32) as u8;
            v[row * cw + col] =
                (128 + ((row + index as usize) % ch.max(1) * 64 / ch.max(1)) as i32 - 32) as u8;
        }
    }
    Frame {
        width,
        height,
        data,
    }
}

fn draw_number(y: &mut [u8], w: usize, h: usize, scale: usize, x0: usize, y0: usize, text: &str) {
    let mut x = x0;
    for ch in text.chars() {
        let glyph = match ch {
            '0'..='9' => &DIGITS[ch as usize - '0' as usize],
            '.' => &DIGITS[10],
            _ => continue,
        };
        for (gy, bits) in glyph.iter().enumerate() {
            for gx in 0..5 {
                if bits & (0x10 >> gx) == 0 {
                    continue;
                }
                for dy in 0..scale {
                    for dx in 0..scale {
                        let (px, py) = (x + gx * scale + dx, y0 + gy * scale + dy);
                        if px < w && py < h {
                            y[py * w + px] = 16;
                        }
                    }
                }
            }
        }
        x += 6 * scale;
    }
}

fn code_geometry(w: usize, h: usize, row: usize) -> (usize, usize) {
    let block = (w / CODE_BLOCKS as usize).max(1);
    (block, h.saturating_sub((2 - row) * block))
}

fn check(value: u32) -> u8 {
    let b = value.to_be_bytes();
    b[0] ^ b[1].rotate_left(1) ^ b[2].rotate_left(2) ^ b[3].rotate_left(3) ^ 0xA5
}

fn code_row(y: &mut [u8], w: usize, h: usize, row: usize, value: u32) {
    let (block, top) = code_geometry(w, h, row);
    let bits = ((value as u64) << 8) | check(value) as u64;
    for i in 0..CODE_BLOCKS as usize {
        let on = bits >> (CODE_BLOCKS as usize - 1 - i) & 1 == 1;
        for r in top..(top + block).min(h) {
            for c in i * block..((i + 1) * block).min(w) {
                y[r * w + c] = if on { 235 } else { 16 };
            }
        }
    }
}

fn read_row(f: &Frame, row: usize) -> Option<u32> {
    let (w, h) = (f.width as usize, f.height as usize);
    let (block, top) = code_geometry(w, h, row);
    if block < 4 || top + block > h {
        return None;
    }
    let y = f.y();
    let mut bits = 0u64;
    for i in 0..CODE_BLOCKS as usize {
        // The middle half of each block: edges blur under compression.
        let (r0, c0, q) = (top + block / 4, i * block + block / 4, (block / 2).max(1));
        let mut sum = 0u32;
        for r in r0..r0 + q {
            sum += y[r * w + c0..r * w + c0 + q]
                .iter()
                .map(|&p| p as u32)
                .sum::<u32>();
        }
        bits = bits << 1 | u64::from(sum / (q * q) as u32 > 125);
    }
    let value = (bits >> 8) as u32;
    (check(value) == (bits & 0xff) as u8).then_some(value)
}

/// Reads (frame index, capture stamp in ms) back from a test picture, if its code rows are
/// intact.
pub fn read_code(f: &Frame) -> Option<(u32, u32)> {
    Some((read_row(f, 1)?, read_row(f, 0)?))
}

/// For a received test picture: its frame index, capture stamp, and PSNR (Y) against the
/// exact picture the sender drew at `width`×`height`, scaled as the received one was.
/// `None` when the code rows cannot be read (not a test picture, or damaged).
pub fn check_received(f: &Frame, width: u32, height: u32) -> Option<(u32, u32, f64)> {
    let (index, stamp) = read_code(f)?;
    let div = (width / f.width.max(1)).max(1);
    let reference = draw(width, height, index, stamp).downscale(div);
    if (reference.width, reference.height) != (f.width, f.height) {
        return Some((index, stamp, 0.0));
    }
    Some((index, stamp, crate::psnr_y(f, &reference)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_reads_back_at_every_layer_size() {
        let f = draw(1280, 720, 1234, 987_654_321);
        assert_eq!(read_code(&f), Some((1234, 987_654_321)));
        for div in [2, 4] {
            assert_eq!(
                read_code(&f.downscale(div)),
                Some((1234, 987_654_321)),
                "1/{div}"
            );
        }
        assert_eq!(draw(1280, 720, 1234, 987_654_321), f, "deterministic");
        assert_ne!(draw(1280, 720, 1235, 987_654_321), f, "it moves");
        assert_eq!(read_code(&Frame::black(1280, 720)), None);
    }
}
