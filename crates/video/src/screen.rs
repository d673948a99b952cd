//! The X11 screen, or one window, as a video source (screen sharing). Pictures are read with
//! the core protocol's GetImage through a pure-Rust client: no C library, and it works on
//! any X server, Xvfb and XWayland included. A Wayland session without XWayland offers no
//! such access (a portal would be needed); the error says so.

use x11rb::connection::Connection;
use x11rb::protocol::xproto::{ConnectionExt, ImageFormat, ImageOrder};
use x11rb::rust_connection::RustConnection;

use crate::frame::{i420_len, Frame};
use crate::source::VideoSource;
use crate::VideoError;

/// Captures an X11 drawable at a fixed rate.
pub struct Screen {
    conn: RustConnection,
    window: u32,
    width: u32,
    height: u32,
    fps: u32,
    bgra: bool,
}

impl std::fmt::Debug for Screen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Screen {}x{}@{}", self.width, self.height, self.fps)
    }
}

fn x11(what: &str, e: impl std::fmt::Display) -> VideoError {
    VideoError::Source(format!("{what}: {e}"))
}

impl Screen {
    /// Opens the display named by `$DISPLAY`: its whole screen, or the window `window`.
    pub fn open(window: Option<u32>, fps: u32) -> Result<Self, VideoError> {
        let (conn, n) = x11rb::connect(None).map_err(|e| {
            x11(
                "cannot reach the X display (is $DISPLAY set? a Wayland-only session has no X screen to share)",
                e,
            )
        })?;
        let setup = conn.setup();
        let root = setup
            .roots
            .get(n)
            .ok_or_else(|| x11("X display", "no such screen"))?;
        let depth = root.root_depth;
        let bpp = setup
            .pixmap_formats
            .iter()
            .find(|f| f.depth == depth)
            .map_or(0, |f| f.bits_per_pixel);
        if !(depth == 24 || depth == 32) || bpp != 32 {
            return Err(VideoError::Source(format!(
                "the X screen has {depth}-bit colour in {bpp}-bit pixels; only 24/32-bit colour can be shared"
            )));
        }
        let bgra = setup.image_byte_order == ImageOrder::LSB_FIRST;
        let window = window.unwrap_or(root.root);
        let mut s = Self {
            conn,
            window,
            width: 0,
            height: 0,
            fps: fps.max(1),
            bgra,
        };
        s.measure()?;
        Ok(s)
    }

    fn measure(&mut self) -> Result<(), VideoError> {
        let g = self
            .conn
            .get_geometry(self.window)
            .map_err(|e| x11("X window", e))?
            .reply()
            .map_err(|e| x11("no such X window", e))?;
        self.width = (g.width as u32 & !1).max(2);
        self.height = (g.height as u32 & !1).max(2);
        Ok(())
    }
}

impl VideoSource for Screen {
    fn size(&self) -> (u32, u32) {
        (self.width, self.height)
    }
    fn fps(&self) -> u32 {
        self.fps
    }
    fn is_screen(&self) -> bool {
        true
    }
    fn next_frame(&mut self, _index: u64) -> Result<Option<Frame>, VideoError> {
        let get = |s: &Self| {
            s.conn
                .get_image(
                    ImageFormat::Z_PIXMAP,
                    s.window,
                    0,
                    0,
                    s.width as u16,
                    s.height as u16,
                    !0,
                )
                .map_err(|e| x11("X screen capture", e))?
                .reply()
                .map_err(|e| x11("X screen capture", e))
        };
        let img = match get(self) {
            Ok(i) => i,
            // The window changed size (or went away): measure again once.
            Err(_) => {
                self.measure()?;
                get(self)?
            }
        };
        let (w, h) = (self.width as usize, self.height as usize);
        if img.data.len() < w * h * 4 {
            return Err(VideoError::Source("X screen capture: short picture".into()));
        }
        Ok(Some(bgrx_to_i420(&img.data, w, h, self.bgra)))
    }
}

/// 32-bit pixels (B, G, R, X in memory when `bgra`, else X, R, G, B) to I420 with BT.601
/// limited-range coefficients; chroma is the average of each 2×2 block.
pub fn bgrx_to_i420(px: &[u8], w: usize, h: usize, bgra: bool) -> Frame {
    let mut data = vec![0u8; i420_len(w as u32, h as u32)];
    let (y_plane, uv) = data.split_at_mut(w * h);
    let (u_plane, v_plane) = uv.split_at_mut((w / 2) * (h / 2));
    let rgb = |i: usize| -> (i32, i32, i32) {
        let p = &px[i * 4..i * 4 + 4];
        if bgra {
            (p[2] as i32, p[1] as i32, p[0] as i32)
        } else {
            (p[1] as i32, p[2] as i32, p[3] as i32)
        }
    };
    for row in 0..h {
        for col in 0..w {
            let (r, g, b) = rgb(row * w + col);
            y_plane[row * w + col] = (((66 * r + 129 * g + 25 * b + 128) >> 8) + 16) as u8;
        }
    }
    for row in 0..h / 2 {
        for col in 0..w / 2 {
            let (mut r, mut g, mut b) = (0, 0, 0);
            for (dy, dx) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
                let (pr, pg, pb) = rgb((2 * row + dy) * w + 2 * col + dx);
                (r, g, b) = (r + pr, g + pg, b + pb);
            }
            let (r, g, b) = (r / 4, g / 4, b / 4);
            u_plane[row * (w / 2) + col] = (((-38 * r - 74 * g + 112 * b + 128) >> 8) + 128) as u8;
            v_plane[row * (w / 2) + col] = (((112 * r - 94 * g - 18 * b + 128) >> 8) + 128) as u8;
        }
    }
    Frame {
        width: w as u32,
        height: h as u32,
        data,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colours_convert_to_studio_range() {
        // White, black, pure red and pure blue, 2×2 each.
        let px = |b: u8, g: u8, r: u8| [b, g, r, 0];
        for ((b, g, r), (y, u, v)) in [
            ((255, 255, 255), (235, 128, 128)),
            ((0, 0, 0), (16, 128, 128)),
            ((0, 0, 255), (82, 90, 240)),
            ((255, 0, 0), (41, 240, 110)),
        ] {
            let data: Vec<u8> = (0..4).flat_map(|_| px(b, g, r)).collect();
            let f = bgrx_to_i420(&data, 2, 2, true);
            assert!(
                (f.y()[0] as i32 - y).abs() <= 1,
                "{:?} y {}",
                (r, g, b),
                f.y()[0]
            );
            assert!(
                (f.u()[0] as i32 - u).abs() <= 1,
                "{:?} u {}",
                (r, g, b),
                f.u()[0]
            );
            assert!(
                (f.v()[0] as i32 - v).abs() <= 1,
                "{:?} v {}",
                (r, g, b),
                f.v()[0]
            );
        }
    }
}
