//! The notes' output-size formulas, and the arithmetic shown when they fail.

use super::rule::ShapeError;
use super::tensor::NodeId;
use crate::diag::fmt_num;

/// A window that does not fit: what was computed, and settings that would fit.
#[derive(Clone, Debug)]
pub struct ExtentError {
    /// The dimension: `height`, `width`, or `height and width`.
    pub dim: String,
    /// `(28 − 5)/2 + 1`
    pub formula: String,
    /// What the formula gives.
    pub value: f64,
    /// What its letters stand for.
    pub legend: String,
    /// Settings that would fit.
    pub suggestions: Vec<String>,
}

impl ExtentError {
    /// The error at node `id`, a `kind` layer, with the arithmetic as a note.
    pub fn into_error(self, id: NodeId, kind: &str) -> ShapeError {
        let whole = self.value.fract() == 0.0;
        let (is, number) = if self.dim.contains(" and ") { ("are", "whole numbers") } else { ("is", "a whole number") };
        let (message, label) = if whole {
            (
                format!("the output {} of this `{kind}` would be {}", self.dim, fmt_num(self.value)),
                format!("{} = {} leaves no output", self.formula, fmt_num(self.value)),
            )
        } else {
            (
                format!("the output {} of this `{kind}` {is} not {number}", self.dim),
                format!("{} = {} is not an integer", self.formula, fmt_num(self.value)),
            )
        };
        let mut e = ShapeError::new(id, message, label).note(self.legend);
        for (i, s) in self.suggestions.into_iter().enumerate() {
            e = e.help(if i == 0 { s } else { format!("or {s}") });
        }
        e
    }
}

fn conv_formula(w: usize, f: usize, s: usize, p: usize) -> String {
    if p == 0 {
        format!("({w} − {f})/{s} + 1")
    } else {
        format!("({w} − {f} + 2·{p})/{s} + 1")
    }
}

fn extent(w: usize, f: usize, s: usize, p: usize) -> f64 {
    (w as f64 - f as f64 + 2.0 * p as f64) / s as f64 + 1.0
}

fn fits(w: usize, f: usize, s: usize, p: usize) -> Option<usize> {
    let num = w.checked_add(p.checked_mul(2)?)?.checked_sub(f)?;
    (num % s == 0).then_some(num / s + 1)
}

/// How far from the value given a suggestion is looked for: the search is bounded whatever
/// the numbers written.
const SEARCH: usize = 100_000;

/// The stride nearest to `s` (not `s` itself, ties: the lower) that divides `num`: the strides
/// that make an extent whole. Trial division up to √num (num is at most about 2^41).
fn nearest_stride(num: usize, s: usize) -> Option<usize> {
    let mut best: Option<usize> = None;
    let mut consider = |q: usize| {
        if q != s && best.is_none_or(|b| (q.abs_diff(s), q) < (b.abs_diff(s), b)) {
            best = Some(q);
        }
    };
    let mut d = 1usize;
    while d.saturating_mul(d) <= num {
        if num.is_multiple_of(d) {
            consider(d);
            consider(num / d);
        }
        d += 1;
    }
    best
}

/// The value in `lo..=hi` nearest to `center` (ties: the lower, or by `prefer`) for which
/// `ok` holds, looking at most [`SEARCH`] away.
fn nearest(center: usize, lo: usize, hi: usize, ok: impl Fn(usize) -> bool, prefer_odd: bool) -> Option<usize> {
    for d in 0..=SEARCH {
        let below = center.checked_sub(d).filter(|&q| q >= lo && q <= hi && ok(q));
        let above = center.checked_add(d).filter(|&q| d > 0 && q >= lo && q <= hi && ok(q));
        match (below, above) {
            (Some(b), Some(a)) if prefer_odd && b % 2 == 0 && a % 2 == 1 => return Some(a),
            (Some(b), _) => return Some(b),
            (None, Some(a)) => return Some(a),
            (None, None) => {}
        }
        if center.saturating_sub(d) <= lo && center.saturating_add(d) >= hi {
            return None;
        }
    }
    None
}

/// A window's size, stride, padding and dilation, and how its output size rounds.
#[derive(Clone, Copy, Debug)]
pub struct Window {
    /// Taps across (`size`).
    pub f: usize,
    /// Stride.
    pub s: usize,
    /// Padding on each side.
    pub p: usize,
    /// Distance between taps (1: none).
    pub dil: usize,
    /// `round = floor`: the windows that fit, the rest left out.
    pub floor: bool,
}

impl Window {
    /// Dilation 1, exact: the notes' window.
    pub fn plain(f: usize, s: usize, p: usize) -> Window {
        Window { f, s, p, dil: 1, floor: false }
    }
    /// The extent over the input, `d·(F − 1) + 1`.
    fn span(&self) -> usize {
        self.dil.saturating_mul(self.f.saturating_sub(1)).saturating_add(1)
    }
}

/// Convolution and locally-connected layers: `(W − F + 2P)/S + 1`, with `F` the effective
/// size `d·(F − 1) + 1` when the taps are dilated; floored on request.
pub fn window_extent(dim: &str, w: usize, win: Window) -> Result<usize, ExtentError> {
    let Window { f: size, s, p, dil, floor } = win;
    let f = win.span();
    if let Some(n) = fits(w, f, s, p) {
        return Ok(n);
    }
    let padded = w.saturating_add(p.saturating_mul(2));
    if floor && padded >= f {
        return Ok((padded - f) / s.max(1) + 1);
    }
    let mut suggestions = Vec::new();
    // The padding nearest the one given that fits this stride.
    if let Some(p2) = nearest(p, 0, f, |q| q != p && fits(w, f, s, q).is_some(), false) {
        let n = fits(w, f, s, p2).unwrap_or(0);
        suggestions.push(format!("pad = {p2} gives {} = {n}", conv_formula(w, f, s, p2)));
    }
    let span = w.checked_add(p.saturating_mul(2)).and_then(|x| x.checked_sub(f));
    if let Some(s2) = span.filter(|&n| n > 0).and_then(|n| nearest_stride(n, s)) {
        let n = fits(w, f, s2, p).unwrap_or(0);
        suggestions.push(format!("stride = {s2} gives {} = {n}", conv_formula(w, f, s2, p)));
    }
    let widest = w.saturating_add(p.saturating_mul(2));
    // A size (with this dilation) that fits: effective sizes q = d·(F − 1) + 1.
    let reach = |q: usize| q >= 1 && (q - 1).is_multiple_of(dil);
    if let Some(f2) = nearest(f, 1, widest, |q| q != f && reach(q) && fits(w, q, s, p).is_some(), dil == 1) {
        let n = fits(w, f2, s, p).unwrap_or(0);
        suggestions.push(format!("size = {} gives {} = {n}", (f2 - 1) / dil + 1, conv_formula(w, f2, s, p)));
    }
    if dil > 1 {
        let eff = |d: usize| d.saturating_mul(size.saturating_sub(1)).saturating_add(1);
        if let Some(d2) = nearest(dil, 1, widest, |d| d != dil && fits(w, eff(d), s, p).is_some(), false) {
            let n = fits(w, eff(d2), s, p).unwrap_or(0);
            suggestions.push(format!("dilation = {d2} gives {} = {n}", conv_formula(w, eff(d2), s, p)));
        }
    }
    if padded >= f {
        let num = padded - f;
        let (n, left) = (num / s.max(1) + 1, num % s.max(1));
        suggestions.push(format!(
            "round = floor gives ⌊{}⌋ + 1 = {n}, the last {left} left out (as PyTorch and Keras do)",
            conv_formula(w, f, s, p).trim_end_matches(" + 1")
        ));
    }
    let effective = if dil > 1 {
        format!("F = {dil}·({size} − 1) + 1 = {f} (the size {size} dilated by {dil})")
    } else {
        format!("F = {f} (size)")
    };
    Err(ExtentError {
        dim: dim.to_string(),
        formula: conv_formula(w, f, s, p),
        value: extent(w, f, s, p),
        legend: format!(
            "output size = (W − F + 2P)/S + 1 with W = {w} (input {dim}), {effective}, P = {p} (pad), S = {s} (stride)"
        ),
        suggestions,
    })
}

fn pool_formula(w: usize, f: usize, s: usize) -> String {
    format!("({w} − {f})/{s} + 1")
}

/// The windows of a pooling that rounds up: `⌈(W − F)/S⌉ + 1`, less one when the last
/// would start past the input (PyTorch's `ceil_mode` without padding).
fn ceil_extent(w: usize, f: usize, s: usize) -> usize {
    let n = (w - f).div_ceil(s.max(1)) + 1;
    if (n - 1) * s >= w {
        n - 1
    } else {
        n
    }
}

/// Pooling: `(W − F)/S + 1`, no padding; floored or ceiled on request.
pub fn pool_extent(dim: &str, w: usize, f: usize, s: usize, floor: bool, ceil: bool) -> Result<usize, ExtentError> {
    if let Some(n) = fits(w, f, s, 0) {
        return Ok(n);
    }
    if floor && f <= w {
        return Ok((w - f) / s.max(1) + 1);
    }
    if ceil && f <= w {
        return Ok(ceil_extent(w, f, s));
    }
    let mut suggestions = Vec::new();
    if f <= w {
        if let Some(s2) = Some(w - f).filter(|&n| n > 0).and_then(|n| nearest_stride(n, s)) {
            let n = fits(w, f, s2, 0).unwrap_or(0);
            suggestions.push(format!("stride = {s2} gives {} = {n}", pool_formula(w, f, s2)));
        }
    }
    if let Some(f2) = nearest(f, 1, w, |q| q != f && fits(w, q, s, 0).is_some(), false) {
        let n = fits(w, f2, s, 0).unwrap_or(0);
        suggestions.push(format!("size = {f2} gives {} = {n}", pool_formula(w, f2, s)));
    }
    if f <= w {
        let n = (w - f) / s.max(1) + 1;
        let left = (w - f) % s.max(1);
        suggestions.push(format!(
            "round = floor gives ⌊({w} − {f})/{s}⌋ + 1 = {n}, the last {left} left out (as PyTorch and Keras pool)"
        ));
        suggestions.push(format!(
            "round = ceil gives {}, the last window cut at the edge (PyTorch's ceil_mode)",
            ceil_extent(w, f, s)
        ));
    }
    Err(ExtentError {
        dim: dim.to_string(),
        formula: pool_formula(w, f, s),
        value: extent(w, f, s, 0),
        legend: format!("output size = (W − F)/S + 1 with W = {w} (input {dim}), F = {f} (size), S = {s} (stride); pooling has no padding"),
        suggestions,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_notes_examples() {
        // 7×7 input, 3×3 filter: stride 1 gives 5, stride 2 gives 3, stride 3 does not fit.
        assert_eq!(window_extent("width", 7, Window::plain(3, 1, 0)).ok(), Some(5));
        assert_eq!(window_extent("width", 7, Window::plain(3, 2, 0)).ok(), Some(3));
        let e = window_extent("width", 7, Window::plain(3, 3, 0)).expect_err("does not fit");
        assert_eq!(e.formula, "(7 − 3)/3 + 1");
        assert!((e.value - 7.0 / 3.0).abs() < 1e-12);
        // AlexNet's first layer: (227 − 11)/4 + 1 = 55.
        assert_eq!(window_extent("width", 227, Window::plain(11, 4, 0)).ok(), Some(55));
        // Same padding keeps the size: (32 − 3 + 2)/1 + 1 = 32.
        assert_eq!(window_extent("width", 32, Window::plain(3, 1, 1)).ok(), Some(32));
        // Pooling 2/2 halves; the overlapping 3/2 on 13 gives 6.
        assert_eq!(pool_extent("width", 224, 2, 2, false, false).ok(), Some(112));
        assert_eq!(pool_extent("width", 13, 3, 2, false, false).ok(), Some(6));
    }

    #[test]
    fn suggestions_fit() {
        let e = window_extent("width", 28, Window::plain(5, 2, 0)).expect_err("does not fit");
        assert_eq!(e.formula, "(28 − 5)/2 + 1");
        assert_eq!(e.value, 12.5);
        assert_eq!(
            e.suggestions,
            [
                "stride = 1 gives (28 − 5)/1 + 1 = 24",
                "size = 4 gives (28 − 4)/2 + 1 = 13",
                "round = floor gives ⌊(28 − 5)/2⌋ + 1 = 12, the last 1 left out (as PyTorch and Keras do)"
            ]
        );
        // Padding moves the numerator in steps of 2, so it can only help when S > 2.
        let e = window_extent("width", 32, Window::plain(3, 3, 0)).expect_err("does not fit");
        assert_eq!(e.suggestions[0], "pad = 2 gives (32 − 3 + 2·2)/3 + 1 = 12");
    }

    #[test]
    fn dilation_widens_the_window_and_floor_rounds_down() {
        // 3 taps 2 apart span 5: (28 − 5 + 2·2)/1 + 1 = 28, same padding for a dilated 3×3.
        let win = Window { f: 3, s: 1, p: 2, dil: 2, floor: false };
        assert_eq!(window_extent("width", 28, win).ok(), Some(28));
        let win = Window { f: 3, s: 3, p: 0, dil: 2, floor: false };
        let e = window_extent("width", 28, win).expect_err("does not fit");
        assert_eq!(e.formula, "(28 − 5)/3 + 1");
        assert_eq!(
            e.legend,
            "output size = (W − F + 2P)/S + 1 with W = 28 (input width), F = 2·(3 − 1) + 1 = 5 (the size 3 dilated by 2), P = 0 (pad), S = 3 (stride)"
        );
        // Sizes and dilations that fit, in effective sizes 2·(F − 1) + 1 and d·2 + 1.
        assert_eq!(
            e.suggestions[2..],
            [
                "size = 4 gives (28 − 7)/3 + 1 = 8",
                "dilation = 3 gives (28 − 7)/3 + 1 = 8",
                "round = floor gives ⌊(28 − 5)/3⌋ + 1 = 8, the last 2 left out (as PyTorch and Keras do)"
            ]
        );
        assert_eq!(window_extent("width", 28, Window { floor: true, ..win }).ok(), Some(8));
        // Dilated past the input: 3 taps 20 apart span 41 > 28 + 2·1, floored or not.
        let win = Window { f: 3, s: 1, p: 1, dil: 20, floor: true };
        let e = window_extent("width", 28, win).expect_err("no output");
        assert_eq!(e.value, -10.0);
        assert!(e.suggestions.iter().any(|s| s.starts_with("dilation = 14 gives")), "{:?}", e.suggestions);
    }

    #[test]
    fn pooling_rounds_up_as_pytorchs_ceil_mode() {
        // 11 → 6 with size 2 (the last window one value wide); 7 with size 3 stride 2: 3.
        assert_eq!(pool_extent("width", 11, 2, 2, false, true).ok(), Some(6));
        assert_eq!(pool_extent("width", 7, 3, 2, false, true).ok(), Some(3));
        // ⌈(6 − 1)/3⌉ + 1 = 3 would start at 6, past the input: 2.
        assert_eq!(pool_extent("width", 6, 1, 3, false, true).ok(), Some(2));
        let e = pool_extent("width", 11, 2, 2, false, false).expect_err("does not fit");
        assert_eq!(
            e.suggestions.last().map(String::as_str),
            Some("round = ceil gives 6, the last window cut at the edge (PyTorch's ceil_mode)")
        );
    }

    #[test]
    fn a_filter_larger_than_the_input_leaves_nothing() {
        let e = window_extent("height", 5, Window::plain(7, 1, 0)).expect_err("no output");
        assert_eq!(e.value, -1.0);
        let e = pool_extent("height", 2, 3, 1, false, false).expect_err("no output");
        assert_eq!(e.value, 0.0);
    }
}
