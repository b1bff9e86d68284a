//! Random changes to training images, applied to each batch as it is gathered (the data set
//! is never copied): a random crop of the image zero-padded by `crop` pixels on every side
//! (PyTorch's `RandomCrop(size, padding = crop)`: a shift of up to `crop` pixels each way,
//! zeros coming in), a random shift of up to `shift` pixels each way with the edge pixels
//! repeated (Keras's `width_shift_range`/`height_shift_range` in whole pixels with
//! `fill_mode = "nearest"`), and a horizontal flip half the time.
//!
//! The draws of an epoch come from a generator seeded by the run's seed and the epoch alone,
//! drawn for every row of a batch in order before any is applied: the same images whatever
//! the threads or processes that share the batch, and a resumed run (which starts at an
//! epoch) draws what an uninterrupted one does.

use rand::{Rng, RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// What to do to each training image `[height, width, channels]` (channels last).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Augment {
    /// Image height.
    pub height: usize,
    /// Image width.
    pub width: usize,
    /// Channels.
    pub channels: usize,
    /// Zero padding of the random crop (0: none).
    pub crop: usize,
    /// The largest shift with the edge repeated (0: none).
    pub shift: usize,
    /// Flip horizontally half the time.
    pub flip: bool,
}

/// One image's draw: the crop's offset, the shift and the flip.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Draw {
    crop: (isize, isize),
    shift: (isize, isize),
    flip: bool,
}

impl Augment {
    /// The generator of epoch `epoch` (from 0) of a run seeded `seed`.
    pub fn generator(seed: u64, epoch: usize) -> ChaCha8Rng {
        // A stream of its own: not the shuffle's, not dropout's.
        ChaCha8Rng::seed_from_u64(seed ^ 0xA067_3E47_0000_0000 ^ (epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15))
    }

    /// The draws for the next `rows` images, in order.
    pub fn draw(&self, rng: &mut impl Rng, rows: usize, out: &mut Vec<Draw>) {
        out.clear();
        // (As i64: the draws are the same on every platform.)
        let (c, s) = (self.crop as i64, self.shift as i64);
        fn offset(rng: &mut impl Rng, r: i64) -> (isize, isize) {
            (rng.random_range(-r..=r) as isize, rng.random_range(-r..=r) as isize)
        }
        for _ in 0..rows {
            let mut d = Draw::default();
            if c > 0 {
                d.crop = offset(rng, c);
            }
            if s > 0 {
                d.shift = offset(rng, s);
            }
            if self.flip {
                d.flip = rng.random_bool(0.5);
            }
            out.push(d);
        }
    }

    /// Applies `d` to one image `x` (`height·width·channels` values), using `scratch` (as
    /// many values) for the original.
    pub fn apply(&self, d: Draw, x: &mut [f32], scratch: &mut Vec<f32>) {
        if d == Draw::default() {
            return;
        }
        let (h, w, ch) = (self.height as isize, self.width as isize, self.channels);
        scratch.clear();
        scratch.extend_from_slice(x);
        for y in 0..h {
            for col in 0..w {
                let out = &mut x[((y * w + col) as usize) * ch..((y * w + col) as usize + 1) * ch];
                // The flip, then the crop of the padded image, then the shift of the original.
                let col = if d.flip { w - 1 - col } else { col };
                let (cy, cx) = (y + d.crop.0, col + d.crop.1);
                if cy < 0 || cy >= h || cx < 0 || cx >= w {
                    out.fill(0.0);
                    continue;
                }
                let (sy, sx) = ((cy + d.shift.0).clamp(0, h - 1), (cx + d.shift.1).clamp(0, w - 1));
                let from = ((sy * w + sx) as usize) * ch;
                out.copy_from_slice(&scratch[from..from + ch]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(h: usize, w: usize, c: usize) -> Vec<f32> {
        (0..h * w * c).map(|i| i as f32 + 1.0).collect()
    }

    #[test]
    fn flips_crops_and_shifts_move_pixels_as_said() {
        let a = Augment { height: 3, width: 4, channels: 2, crop: 1, shift: 1, flip: true };
        let x = image(3, 4, 2);
        let at = |v: &[f32], y: usize, x: usize| (v[(y * 4 + x) * 2], v[(y * 4 + x) * 2 + 1]);
        let mut scratch = Vec::new();
        // A flip mirrors each row.
        let mut f = x.clone();
        a.apply(Draw { flip: true, ..Draw::default() }, &mut f, &mut scratch);
        assert_eq!(at(&f, 1, 0), at(&x, 1, 3));
        assert_eq!(at(&f, 2, 3), at(&x, 2, 0));
        // A crop one down and one right of the padded image's centre: zeros come in at the
        // bottom and the right.
        let mut c = x.clone();
        a.apply(Draw { crop: (1, 1), ..Draw::default() }, &mut c, &mut scratch);
        assert_eq!(at(&c, 0, 0), at(&x, 1, 1));
        assert_eq!(at(&c, 2, 1), (0.0, 0.0));
        assert_eq!(at(&c, 1, 3), (0.0, 0.0));
        // A shift repeats the edge instead.
        let mut s = x.clone();
        a.apply(Draw { shift: (-1, 1), ..Draw::default() }, &mut s, &mut scratch);
        assert_eq!(at(&s, 0, 0), at(&x, 0, 1));
        assert_eq!(at(&s, 0, 3), at(&x, 0, 3));
        assert_eq!(at(&s, 2, 2), at(&x, 1, 3));
    }

    #[test]
    fn draws_depend_on_the_seed_and_epoch_alone() {
        let a = Augment { height: 28, width: 28, channels: 1, crop: 4, shift: 0, flip: true };
        let (mut one, mut two) = (Vec::new(), Vec::new());
        a.draw(&mut Augment::generator(7, 3), 64, &mut one);
        a.draw(&mut Augment::generator(7, 3), 64, &mut two);
        assert_eq!(one, two);
        a.draw(&mut Augment::generator(7, 4), 64, &mut two);
        assert_ne!(one, two);
        // Every offset is drawn, both signs, and about half the images flip.
        let many = {
            let mut v = Vec::new();
            a.draw(&mut Augment::generator(1, 0), 4000, &mut v);
            v
        };
        for k in -4..=4 {
            assert!(many.iter().any(|d| d.crop.0 == k) && many.iter().any(|d| d.crop.1 == k));
        }
        let flips = many.iter().filter(|d| d.flip).count();
        assert!((1800..2200).contains(&flips), "{flips}");
    }
}
