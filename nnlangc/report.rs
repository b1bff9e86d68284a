//! The learning curves `nnlangc train` draws beside the weights and metrics the library
//! writes (plotters is a dependency of the command line only).

use nnlang_runtime::train::EpochStats;
use plotters::prelude::*;

/// An epoch axis label: whole epochs only (a short run would otherwise repeat them).
fn epoch_label(v: &f64) -> String {
    if (v - v.round()).abs() < 1e-9 {
        format!("{v:.0}")
    } else {
        String::new()
    }
}

/// Loss (train and validation) and accuracy (a training sample and validation) against
/// epochs, side by side.
pub fn curves_svg(title: &str, history: &[EpochStats]) -> Result<String, String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (960, 400)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let (left, right) = root.split_horizontally(480);
        let epochs = history.len().max(1) as f64;
        let losses: Vec<f64> = history
            .iter()
            .flat_map(|s| std::iter::once(s.train_loss).chain(s.val_loss))
            .filter(|v| v.is_finite())
            .collect();
        let top = losses.iter().cloned().fold(0.0f64, f64::max).max(1e-6) * 1.05;
        let mut chart = ChartBuilder::on(&left)
            .caption(format!("{title}: loss"), ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(32)
            .y_label_area_size(48)
            .build_cartesian_2d(0.5f64..epochs + 0.5, 0f64..top)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc("epoch")
            .y_desc("loss")
            .x_labels(history.len().clamp(2, 12))
            .x_label_formatter(&epoch_label)
            .draw()
            .map_err(|e| e.to_string())?;
        chart
            .draw_series(LineSeries::new(history.iter().map(|s| (s.epoch as f64, s.train_loss)), &BLUE))
            .map_err(|e| e.to_string())?
            .label("train")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], BLUE));
        if history.iter().any(|s| s.val_loss.is_some()) {
            chart
                .draw_series(LineSeries::new(
                    history.iter().filter_map(|s| s.val_loss.map(|v| (s.epoch as f64, v))),
                    &RED,
                ))
                .map_err(|e| e.to_string())?
                .label("validation")
                .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], RED));
        }
        chart
            .configure_series_labels()
            .border_style(BLACK)
            .background_style(WHITE)
            .draw()
            .map_err(|e| e.to_string())?;

        let accs: Vec<f64> = history.iter().flat_map(|s| s.val_accuracy.into_iter().chain(s.train_accuracy)).collect();
        let lo = accs.iter().cloned().fold(1.0f64, f64::min).min(0.9);
        let mut chart = ChartBuilder::on(&right)
            .caption(format!("{title}: accuracy"), ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(32)
            .y_label_area_size(48)
            .build_cartesian_2d(0.5f64..epochs + 0.5, (lo - 0.01).max(0.0)..1.0f64)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc("epoch")
            .y_desc("accuracy")
            .x_labels(history.len().clamp(2, 12))
            .x_label_formatter(&epoch_label)
            .draw()
            .map_err(|e| e.to_string())?;
        chart
            .draw_series(LineSeries::new(
                history.iter().filter_map(|s| s.train_accuracy.map(|v| (s.epoch as f64, v))),
                &BLUE,
            ))
            .map_err(|e| e.to_string())?
            .label("train (sample)")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], BLUE));
        if history.iter().any(|s| s.val_accuracy.is_some()) {
            chart
                .draw_series(LineSeries::new(
                    history.iter().filter_map(|s| s.val_accuracy.map(|v| (s.epoch as f64, v))),
                    &RED,
                ))
                .map_err(|e| e.to_string())?
                .label("validation")
                .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], RED));
        }
        if !accs.is_empty() {
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::LowerRight)
                .border_style(BLACK)
                .background_style(WHITE)
                .draw()
                .map_err(|e| e.to_string())?;
        }
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(svg)
}

/// Inside the model against epochs: the fraction of dead ReLU units and of saturated
/// tanh/sigmoid outputs per layer, and each weight tensor's gradient norm (log scale).
pub fn layers_svg(title: &str, history: &[EpochStats]) -> Result<String, String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (960, 400)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let (left, right) = root.split_horizontally(480);
        let epochs = history.len().max(1) as f64;
        let colours = [BLUE, RED, GREEN, MAGENTA, CYAN, BLACK];
        // Per layer: the dead fraction for ReLU layers, the saturated one for tanh/sigmoid.
        let mut names: Vec<(String, &'static str)> = Vec::new();
        for s in history {
            for l in &s.layers {
                if (l.dead.is_some() || l.saturated.is_some()) && !names.iter().any(|(n, _)| *n == l.name) {
                    names.push((l.name.clone(), l.function));
                }
            }
        }
        let mut chart = ChartBuilder::on(&left)
            .caption(format!("{title}: dead (ReLU) / saturated (tanh, sigmoid)"), ("sans-serif", 16))
            .margin(12)
            .x_label_area_size(32)
            .y_label_area_size(48)
            .build_cartesian_2d(0.5f64..epochs + 0.5, 0f64..1.0)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc("epoch")
            .y_desc("fraction")
            .x_labels(history.len().clamp(2, 12))
            .x_label_formatter(&epoch_label)
            .draw()
            .map_err(|e| e.to_string())?;
        for (i, (name, f)) in names.iter().enumerate() {
            let c = colours[i % colours.len()];
            let pts: Vec<(f64, f64)> = history
                .iter()
                .filter_map(|s| {
                    let l = s.layers.iter().find(|l| &l.name == name)?;
                    Some((s.epoch as f64, l.dead.or(l.saturated)?))
                })
                .collect();
            chart
                .draw_series(LineSeries::new(pts, c))
                .map_err(|e| e.to_string())?
                .label(format!("{name} ({f})"))
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], c));
        }
        if !names.is_empty() {
            chart
                .configure_series_labels()
                .border_style(BLACK)
                .background_style(WHITE)
                .draw()
                .map_err(|e| e.to_string())?;
        }
        let norms: Vec<f64> = history
            .iter()
            .flat_map(|s| s.grad_norms.iter().map(|(_, g)| *g))
            .filter(|g| *g > 0.0 && g.is_finite())
            .collect();
        let (lo, hi) = norms.iter().fold((f64::INFINITY, 0f64), |(a, b), &v| (a.min(v), b.max(v)));
        let (lo, hi) = if lo.is_finite() { (lo / 2.0, hi * 2.0) } else { (1e-6, 1.0) };
        let mut chart = ChartBuilder::on(&right)
            .caption(format!("{title}: gradient norms"), ("sans-serif", 16))
            .margin(12)
            .x_label_area_size(32)
            .y_label_area_size(56)
            .build_cartesian_2d(0.5f64..epochs + 0.5, (lo..hi).log_scale())
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc("epoch")
            .y_desc("‖g‖")
            .x_labels(history.len().clamp(2, 12))
            .x_label_formatter(&epoch_label)
            .draw()
            .map_err(|e| e.to_string())?;
        let tensors: Vec<String> = history
            .first()
            .map(|s| {
                s.grad_norms
                    .iter()
                    .filter(|(n, _)| n.ends_with("weight") || n.contains("weight_"))
                    .map(|(n, _)| n.clone())
                    .collect()
            })
            .unwrap_or_default();
        for (i, name) in tensors.iter().enumerate() {
            let c = colours[i % colours.len()];
            let pts: Vec<(f64, f64)> = history
                .iter()
                .filter_map(|s| s.grad_norms.iter().find(|(n, _)| n == name).map(|(_, g)| (s.epoch as f64, *g)))
                .filter(|(_, g)| *g > 0.0 && g.is_finite())
                .collect();
            chart
                .draw_series(LineSeries::new(pts, c))
                .map_err(|e| e.to_string())?
                .label(name.clone())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], c));
        }
        if !tensors.is_empty() {
            chart
                .configure_series_labels()
                .border_style(BLACK)
                .background_style(WHITE)
                .draw()
                .map_err(|e| e.to_string())?;
        }
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(svg)
}

/// The first layer's weights as pictures, the notes' look at what a network learned: each
/// filter of a first convolution (`[k, c, f, f]`, one or three channels), or each unit of a
/// first dense layer over an image (its `in` weights as the image, `h × w × c` or a square of
/// grey), scaled to its own range, up to 64 in a grid. `None` when the first layer is
/// neither.
pub fn first_layer_png(table: &[nnlang_runtime::plan::Param], weights: &[f32], input: &[usize]) -> Option<Vec<u8>> {
    let p = table.first().filter(|p| p.name.ends_with(".weight"))?;
    let w = &weights[p.buf.range()];
    // (tiles, height, width, channels, value at (tile, y, x, channel)).
    let (n, h, wd, c): (usize, usize, usize, usize) = match (p.shape.as_slice(), input) {
        ([k, ch, f1, f2], _) if (*ch == 1 || *ch == 3) && f1 == f2 => (*k, *f1, *f2, *ch),
        ([units, fan_in], [ih, iw, ch]) if (*ch == 1 || *ch == 3) && ih * iw * ch == *fan_in => (*units, *ih, *iw, *ch),
        ([units, fan_in], [n]) if *n == *fan_in && ((*n as f64).sqrt().round() as usize).pow(2) == *n => {
            let side = (*n as f64).sqrt().round() as usize;
            (*units, side, side, 1)
        }
        _ => return None,
    };
    let conv = p.shape.len() == 4;
    let at = |t: usize, y: usize, x: usize, ch: usize| -> f32 {
        if conv {
            w[((t * c + ch) * h + y) * wd + x] // PyTorch's [k, c, f, f]
        } else {
            w[t * h * wd * c + (y * wd + x) * c + ch] // channels last, as the input
        }
    };
    let n = n.min(64);
    let cols = (n as f64).sqrt().ceil() as usize;
    let rows = n.div_ceil(cols);
    // Small filters are drawn larger.
    let scale = (32 / h.max(wd)).max(1);
    let (th, tw) = (h * scale + 2, wd * scale + 2);
    let (img_w, img_h) = (cols * tw + 2, rows * th + 2);
    let mut img = vec![255u8; img_w * img_h * 3];
    for t in 0..n {
        let vals: Vec<f32> = (0..h * wd * c).map(|i| at(t, i / (wd * c), (i / c) % wd, i % c)).collect();
        let (lo, hi) = vals.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &v| (a.min(v), b.max(v)));
        let span = (hi - lo).max(1e-12);
        let (oy, ox) = ((t / cols) * th + 2, (t % cols) * tw + 2);
        for y in 0..h * scale {
            for x in 0..wd * scale {
                for k in 0..3 {
                    let ch = if c == 3 { k } else { 0 };
                    let v = ((at(t, y / scale, x / scale, ch) - lo) / span * 255.0).round().clamp(0.0, 255.0) as u8;
                    img[((oy + y) * img_w + ox + x) * 3 + k] = v;
                }
            }
        }
    }
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, img_w as u32, img_h as u32);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        let mut writer = enc.write_header().ok()?;
        writer.write_image_data(&img).ok()?;
    }
    Some(out)
}
