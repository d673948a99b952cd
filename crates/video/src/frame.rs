//! A picture in I420 (planar 4:2:0, 8 bits): the one format every source gives and every
//! sink takes.

/// One picture. Width and height are even; planes are tightly packed (Y, then U, then V).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Y plane, then U, then V.
    pub data: Vec<u8>,
}

/// Bytes of an I420 picture of this size.
pub fn i420_len(width: u32, height: u32) -> usize {
    let (w, h) = (width as usize, height as usize);
    w * h + 2 * (w / 2) * (h / 2)
}

impl Frame {
    /// A black picture.
    pub fn black(width: u32, height: u32) -> Self {
        let y = width as usize * height as usize;
        let mut data = vec![16u8; i420_len(width, height)];
        data[y..].fill(128);
        Self {
            width,
            height,
            data,
        }
    }

    /// The Y plane.
    pub fn y(&self) -> &[u8] {
        &self.data[..self.width as usize * self.height as usize]
    }

    /// The U plane.
    pub fn u(&self) -> &[u8] {
        let y = self.width as usize * self.height as usize;
        &self.data[y..y + y / 4]
    }

    /// The V plane.
    pub fn v(&self) -> &[u8] {
        let y = self.width as usize * self.height as usize;
        &self.data[y + y / 4..]
    }

    /// This picture made `div` times smaller each way (1 returns a copy), by averaging
    /// `div`×`div` blocks; sizes are kept even.
    pub fn downscale(&self, div: u32) -> Frame {
        if div <= 1 {
            return self.clone();
        }
        let (w, h) = ((self.width / div) & !1, (self.height / div) & !1);
        let (w, h) = (w.max(2), h.max(2));
        let mut out = Vec::with_capacity(i420_len(w, h));
        let planes = [
            (self.y(), self.width as usize, w as usize, h as usize),
            (
                self.u(),
                self.width as usize / 2,
                w as usize / 2,
                h as usize / 2,
            ),
            (
                self.v(),
                self.width as usize / 2,
                w as usize / 2,
                h as usize / 2,
            ),
        ];
        let d = div as usize;
        for (src, stride, ow, oh) in planes {
            for oy in 0..oh {
                for ox in 0..ow {
                    let mut sum = 0u32;
                    for dy in 0..d {
                        let row = &src[(oy * d + dy) * stride + ox * d..];
                        sum += row[..d].iter().map(|&p| p as u32).sum::<u32>();
                    }
                    out.push((sum / (d * d) as u32) as u8);
                }
            }
        }
        Frame {
            width: w,
            height: h,
            data: out,
        }
    }

    /// This picture resized to `width`×`height` by nearest neighbour: how a smaller layer
    /// is shown at the size of the stream.
    pub fn resize_nearest(&self, width: u32, height: u32) -> Frame {
        if (width, height) == (self.width, self.height) {
            return self.clone();
        }
        let mut out = Vec::with_capacity(i420_len(width, height));
        let planes = [
            (self.y(), self.width, self.height, width, height),
            (
                self.u(),
                self.width / 2,
                self.height / 2,
                width / 2,
                height / 2,
            ),
            (
                self.v(),
                self.width / 2,
                self.height / 2,
                width / 2,
                height / 2,
            ),
        ];
        for (src, sw, sh, ow, oh) in planes {
            for oy in 0..oh {
                let sy = (oy as u64 * sh as u64 / oh as u64) as usize;
                for ox in 0..ow {
                    let sx = (ox as u64 * sw as u64 / ow as u64) as usize;
                    out.push(src[sy * sw as usize + sx]);
                }
            }
        }
        Frame {
            width,
            height,
            data: out,
        }
    }
}

/// Peak signal-to-noise ratio of the Y planes, in dB (100 for identical pictures).
pub fn psnr_y(a: &Frame, b: &Frame) -> f64 {
    let (ya, yb) = (a.y(), b.y());
    let n = ya.len().min(yb.len()).max(1);
    let se: u64 = ya
        .iter()
        .zip(yb)
        .map(|(&p, &q)| {
            let d = p as i64 - q as i64;
            (d * d) as u64
        })
        .sum();
    if se == 0 {
        return 100.0;
    }
    let mse = se as f64 / n as f64;
    10.0 * (255.0 * 255.0 / mse).log10()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scaling_keeps_planes_consistent() {
        let mut f = Frame::black(64, 48);
        for (i, p) in f.data.iter_mut().enumerate() {
            *p = (i % 251) as u8;
        }
        let s = f.downscale(2);
        assert_eq!(
            (s.width, s.height, s.data.len()),
            (32, 24, i420_len(32, 24))
        );
        let back = s.resize_nearest(64, 48);
        assert_eq!(back.data.len(), f.data.len());
        assert_eq!(psnr_y(&f, &f), 100.0);
        assert!(psnr_y(&f, &Frame::black(64, 48)) < 20.0);
    }
}
