//! Image folders as data (`images(…)` in a data block): the bundled folder of PNG and JPEG
//! files trains, `nnlangc run` predicts a new image file, and a corrupt image, a folder
//! without class subfolders and mixed sizes without a size to resize to are errors naming
//! the file.

mod common;

use common::{nnlangc, s, text};
use std::path::Path;

/// A copy of the bundled folder in `dir`, and a model reading it (`size`: the `images(…)`
/// arguments after the path).
fn setup(dir: &Path, size: &str) -> std::path::PathBuf {
    let from = common::root().join("examples/data/fashion-images");
    for class in ["sneaker", "trouser", "tshirt"] {
        std::fs::create_dir_all(dir.join("pics").join(class)).expect("folder");
        for f in std::fs::read_dir(from.join(class)).expect("bundled folder") {
            let f = f.expect("entry").path();
            std::fs::copy(&f, dir.join("pics").join(class).join(f.file_name().expect("name"))).expect("copy");
        }
    }
    let src = std::fs::read_to_string(common::root().join("examples/fashion_images.nn")).expect("example").replace(
        "images(\"data/fashion-images\", height = 28, width = 28, channels = 1)",
        &format!("images(\"{}\"{size})", dir.join("pics").display()),
    );
    let model = dir.join("pics.nn");
    std::fs::write(&model, src).expect("model");
    model
}

/// A grey PNG of `h × w` pixels.
fn png(path: &Path, h: u32, w: u32) {
    let file = std::fs::File::create(path).expect("png");
    let mut e = png::Encoder::new(std::io::BufWriter::new(file), w, h);
    e.set_color(png::ColorType::Grayscale);
    let mut writer = e.write_header().expect("header");
    writer.write_image_data(&vec![128u8; (h * w) as usize]).expect("pixels");
}

#[test]
fn a_folder_of_png_and_jpeg_trains_and_run_predicts_an_image_file() {
    let d = common::temp_dir("images-train");
    let model = setup(&d, ", height = 28, width = 28, channels = 1");
    let out = d.join("run");
    let o = nnlangc(&["train", s(&model), "--out", s(&out)]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert!(
        text(&o.stdout).contains("training FashionImages on 96 examples (24 held out for validation)"),
        "{}",
        text(&o.stdout)
    );
    // Classes in name order: sneaker 0, trouser 1, tshirt 2; new images, not in the folder.
    for (class, k) in [("sneaker", 0), ("trouser", 1), ("tshirt", 2)] {
        let image = common::root().join(format!("examples/data/fashion-images-new/{class}.png"));
        let y = d.join(format!("{class}.npy"));
        let o = nnlangc(&[
            "run",
            s(&model),
            "--weights",
            s(&out.join("weights.safetensors")),
            "--input",
            s(&image),
            "--output",
            s(&y),
        ]);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
        assert!(
            text(&o.stdout).contains(&format!("wrote 1 rows of [3] to {} (first classes: [{k}])", y.display())),
            "{class}: {}",
            text(&o.stdout)
        );
    }
}

#[test]
fn bad_image_folders_are_errors_naming_the_file() {
    let d = common::temp_dir("images-bad");
    // A corrupt image among good ones.
    let model = setup(&d, ", channels = 1");
    let bad = d.join("pics/trouser/broken.png");
    std::fs::write(&bad, b"\x89PNG\r\n\x1a\nthis is not the rest of a PNG file").expect("write");
    let o = nnlangc(&["train", s(&model), "--out", s(&d.join("run"))]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    assert!(
        text(&o.stderr).contains(&format!("{}: not a readable PNG or JPEG image", bad.display())),
        "{}",
        text(&o.stderr)
    );
    assert!(!d.join("run").exists(), "nothing written");
    // Mixed sizes, no size to resize to: named with both sizes; with one, resized.
    std::fs::remove_file(&bad).expect("rm");
    let odd = d.join("pics/tshirt/zz-odd.png");
    png(&odd, 30, 26);
    let o = nnlangc(&["train", s(&model), "--out", s(&d.join("run"))]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    let e = text(&o.stderr);
    assert!(
        e.contains(&format!("{}: is 30×26 pixels and ", odd.display()))
            && e.contains("is 28×28: give the images one size, or `height` and `width` to resize them on load"),
        "{e}"
    );
    let resized = setup(&d, ", height = 28, width = 28, channels = 1");
    let o = nnlangc(&["train", s(&resized), "--out", s(&d.join("run")), "--epochs", "1", "--quiet"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    // A folder of images without class subfolders.
    let flat = d.join("flat");
    std::fs::create_dir_all(&flat).expect("flat");
    png(&flat.join("a.png"), 28, 28);
    let src = std::fs::read_to_string(&model)
        .expect("model")
        .replace(&d.join("pics").display().to_string(), &flat.display().to_string());
    std::fs::write(d.join("flat.nn"), src).expect("model");
    let o = nnlangc(&["train", s(&d.join("flat.nn")), "--out", s(&d.join("run2"))]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains(&format!("{}: has no class subfolders", flat.display())), "{}", text(&o.stderr));
}
