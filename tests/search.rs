//! `nnlangc search` as a user runs it: stages from coarse to fine, candidates with
//! impossible shapes rejected before any training and counted, the trials table, the best
//! configuration as a `.nn` file that compiles, a plot, and a search resumed from its table.

mod common;

use common::{nnlangc, s, search_example as setup, temp_dir, text, trial_rows as rows};

#[test]
fn search_rejects_impossible_shapes_writes_the_best_and_resumes() {
    let dir = temp_dir("search");
    let file = setup(&dir);
    let out = dir.join("run");
    let o = nnlangc(&["search", s(&file), "--jobs", "2", "--out", s(&out)]);
    let t = text(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{t}{}", text(&o.stderr));
    // The filter sizes above 8 cannot slide over an 8×8 image: rejected before training.
    let table = std::fs::read_to_string(out.join("trials.csv")).expect("table");
    assert!(
        table.starts_with("stage,trial,optimizer.lr,size,width,status,val_loss,val_accuracy,seconds,detail\n"),
        "{table}"
    );
    let too_big = table
        .lines()
        .skip(1)
        .filter(|l| l.split(',').nth(3).and_then(|v| v.parse::<u32>().ok()).is_some_and(|s| s > 8))
        .count();
    let rejected = table.lines().filter(|l| l.contains(",rejected,")).count();
    assert!(too_big > 0 && rejected == too_big, "{too_big} too big, {rejected} rejected\n{table}");
    assert!(table.lines().filter(|l| l.contains(",rejected,")).all(|l| l.contains("conv")), "{table}");
    let trained = 13 - rejected;
    assert!(t.contains(&format!("13 trials: {trained} trained, {rejected} rejected before training, 0 failed")), "{t}");
    // The fine stage draws inside the coarse stage's best: its sizes all fit.
    assert!(table.lines().filter(|l| l.starts_with("2,")).all(|l| l.contains(",ok,")), "{table}");
    // The best configuration compiles, and trains on the same data from anywhere.
    let best = out.join("best.nn");
    let src = std::fs::read_to_string(&best).expect("best.nn");
    assert!(src.starts_with("// the best configuration of `nnlangc search` (stage 2, trial "), "{src}");
    let o = nnlangc(&["train", s(&best), "--quiet", "--out", s(&dir.join("best-run"))]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert!(std::fs::read_to_string(out.join("search.svg")).expect("plot").contains("<svg"));

    // The best two trials of the last stage as an ensemble.
    let ens = dir.join("ens");
    let o = nnlangc(&["ensemble", s(&file), "--search", s(&out), "--quiet", "--out", s(&ens)]);
    let et = text(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{et}{}", text(&o.stderr));
    assert!(et.contains("member 2 of 2: trial ") && et.contains("(mean of 2 members' probabilities)"), "{et}");
    assert!(std::fs::read_to_string(ens.join("member-0.nn"))
        .expect("member source")
        .starts_with("// the best configuration"));

    // Interrupted after five trials: the search resumes from its table and ends the same.
    let cut = dir.join("cut");
    std::fs::create_dir_all(&cut).expect("dir");
    let head: Vec<&str> = table.lines().take(6).collect();
    std::fs::write(cut.join("trials.csv"), head.join("\n") + "\n").expect("writes");
    let o = nnlangc(&["search", s(&file), "--out", s(&cut)]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert!(text(&o.stdout).contains("5 trials done"), "{}", text(&o.stdout));
    let again = std::fs::read_to_string(cut.join("trials.csv")).expect("table");
    assert_eq!(rows(&again), rows(&table));
    assert_eq!(std::fs::read_to_string(cut.join("best.nn")).expect("best"), src);
    // A table of another search is refused.
    std::fs::write(cut.join("trials.csv"), "stage,trial,x,status\n").expect("writes");
    let o = nnlangc(&["search", s(&file), "--out", s(&cut)]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o.stderr).contains("a trials table of another search"), "{}", text(&o.stderr));

    // A table tampered with is checked row by row, refused at its line and left as it is.
    let lines: Vec<&str> = table.lines().collect();
    let with = |k: usize, row: &str| {
        let mut v: Vec<String> = lines.iter().take(6).map(|l| l.to_string()).collect();
        v.insert(k, row.to_string());
        v.join("\n") + "\n"
    };
    let replace = |k: usize, row: &str| {
        let mut v: Vec<String> = lines.iter().take(6).map(|l| l.to_string()).collect();
        v[k] = row.to_string();
        v.join("\n") + "\n"
    };
    let first: Vec<&str> = lines[1].split(',').collect();
    let first_trial = first[1].to_string();
    let mut other_value = first.clone();
    other_value[2] = "0.5";
    let mut extra = first.clone();
    extra.push("7");
    let mut far_stage = first.clone();
    far_stage[0] = "9";
    let mut far_trial = first.clone();
    far_trial[1] = "77";
    let mut bad_status = first.clone();
    bad_status[5] = "fine";
    let cases: [(String, &str); 7] = [
        (with(2, "garbage,row"), "trials.csv:3: 2 fields where a row has 10"),
        (
            replace(1, &other_value.join(",")),
            &*format!("trials.csv:2: trial {first_trial} of stage 1 with 0.5, {}", first[3]),
        ),
        (with(2, &extra.join(",")), "trials.csv:3: the last field"),
        (with(2, &far_stage.join(",")), "trials.csv:3: stage 9, but the search has 2"),
        (with(2, &far_trial.join(",")), "trials.csv:3: trial 77 of stage 1, which draws 10 trials"),
        (with(2, &bad_status.join(",")), "trials.csv:3: `fine` is not a status (ok, rejected or failed)"),
        (with(6, lines[1]), &*format!("trials.csv:7: trial {first_trial} of stage 1 is already on line 2")),
    ];
    for (tampered, want) in cases {
        std::fs::write(cut.join("trials.csv"), &tampered).expect("writes");
        let o = nnlangc(&["search", s(&file), "--out", s(&cut)]);
        assert_eq!(o.status.code(), Some(1), "{want}: {}", text(&o.stderr));
        assert!(text(&o.stderr).contains(want), "{want}: {}", text(&o.stderr));
        assert!(text(&o.stderr).contains("this table was not written by this search"), "{}", text(&o.stderr));
        assert_eq!(std::fs::read_to_string(cut.join("trials.csv")).expect("table"), tampered, "left as it is");
    }
    // A last row cut short by a kill (no newline) runs again.
    let cut_short = lines.iter().take(6).map(|l| l.to_string()).collect::<Vec<_>>().join("\n") + "\n1,5,0.0";
    std::fs::write(cut.join("trials.csv"), cut_short).expect("writes");
    let o = nnlangc(&["search", s(&file), "--out", s(&cut)]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert!(text(&o.stdout).contains("5 trials done"), "{}", text(&o.stdout));
}
