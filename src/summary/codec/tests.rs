//! The codec's unit tests: round trips of every layout, older values
//! still decoding, garbage refused.

use super::*;
use crate::summary::{RowView, SummaryBuilder, SummaryOptions};

fn sample() -> SummaryState {
    let mut b = SummaryBuilder::new(SummaryOptions::default());
    for i in 0..300u32 {
        let cfg = format!("cfg{}", i % 17);
        let id = format!("id{i}");
        let model = ["PLS", "RF", "SVR"][i as usize % 3];
        let part = ["train", "val", "test"][i as usize % 3];
        let metric = if i % 5 == 0 { "r2" } else { "mse" };
        let v = (f64::from(i) * 0.37).sin() * 3.0;
        b.observe(
            i as usize,
            &RowView {
                id: Some(&id),
                dataset_name: Some("ds"),
                config_name: Some(&cfg),
                pipeline_uid: Some(&cfg),
                model_name: Some(model),
                fold_id: Some("0"),
                partition: Some(part),
                metric: Some(metric),
                task_type: Some("regression"),
                scores: [Some(v), (i % 7 != 0).then_some(-v), Some(f64::NAN)],
            },
        )
        .unwrap();
    }
    b.state()
}

#[test]
fn round_trip_is_exact() {
    let st = sample();
    let check = TextCheck::of(r#"{"a":1,"runs":[]}"#);
    let runs = encode_runs(&st, &[]);
    let place = RunsRef::of(&runs, 1234);
    let groups = encode_groups(st.groups.as_ref().unwrap());
    let groups_place = RunsRef::of(&groups, 1000);
    let state = encode_head(&st, &check, place, Some(groups_place));
    let enc = split(state.as_bytes()).unwrap();
    let (mut back, text) = enc.state(&runs).unwrap();
    assert_eq!(enc.prefix().unwrap().runs, RunsPlace::Body(place));
    // 1.5: the group aggregates are where the head says, read apart.
    assert_eq!(enc.groups_place().unwrap(), Some(groups_place));
    assert!(back.groups.is_none());
    back.groups = Some(decode_groups(&groups, &groups_place).unwrap());
    assert_eq!(back, st);
    let mut other = groups.clone();
    other[5] ^= 1;
    assert!(decode_groups(&other, &groups_place).is_err());
    // 1.4's head (N4S3) still decodes, without group aggregates.
    let v3 = encode_head_v3(&st, &check, place);
    let enc3 = split(v3.as_bytes()).unwrap();
    assert_eq!(enc3.groups_place().unwrap(), None);
    let (mut back3, _) = enc3.state(&runs).unwrap();
    back3.groups = st.groups.clone();
    assert_eq!(back3, st);
    assert_eq!(text, check);
    // Other bytes than the ones the head names are refused.
    let mut other = runs.clone();
    *other.last_mut().unwrap() ^= 1;
    assert!(enc.state(&other).is_err());
    // 1.2's values still decode.
    let (runs_v1, state_v1) = encode_v1(&st, &check);
    let enc = split(state_v1.as_bytes()).unwrap();
    assert_eq!(
        enc.prefix().unwrap().runs,
        RunsPlace::KeyValue {
            len: runs_v1.len() as u64
        }
    );
    // A 1.2 head has no per-metric statistics: with two metrics they
    // stay unknown (an append then rebuilds the state from the rows).
    let mut old = st.clone();
    old.by_metric = false;
    old.groups = None;
    for m in old.metrics.values_mut() {
        m.scores = Default::default();
        m.models.clear();
    }
    for e in old.top.values_mut().flat_map(|p| p.values_mut()).flatten() {
        e.train_score = None;
    }
    assert_eq!(enc.state(runs_v1.as_bytes()).unwrap().0, old);
    let head = enc.head().unwrap();
    assert_eq!(head.n_runs, 17);
    assert!(head.state.runs.is_empty());
    assert_eq!(head.state.top, st.top);
}

fn runs_value(magic: &[u8; 4], raw: &[u8]) -> String {
    let mut v = magic.to_vec();
    v.extend((raw.len() as u32).to_le_bytes());
    v.extend(zstd::bulk::compress(raw, TAIL_LEVEL).unwrap());
    base64_simd::STANDARD.encode_to_string(v)
}

#[test]
fn runs_written_by_1_2_still_decode() {
    let st = sample();
    let mut raw = Vec::new();
    write::put_tail_v1(&mut raw, &st);
    let mut back = SummaryState::default();
    fill_runs(
        runs_value(RUNS_MAGIC_V1, &raw).as_bytes(),
        &mut back,
        (17, 17),
    )
    .unwrap();
    assert_eq!(
        (back.runs, back.pipelines),
        (st.runs.clone(), st.pipelines.clone())
    );
    let mut columnar = Vec::new();
    write::put_tail(&mut columnar, &st);
    assert!(columnar.len() < raw.len(), "metric names stored once");
}

#[test]
fn columnar_runs_refuse_garbage_without_panicking() {
    let st = sample();
    let mut raw = Vec::new();
    write::put_tail(&mut raw, &st);
    let mut seed = 11u64;
    for _ in 0..3000 {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
        let mut r = raw.clone();
        let at = (seed >> 33) as usize % r.len();
        r[at] ^= (seed >> 17) as u8 | 1;
        if (seed >> 9).is_multiple_of(3) {
            r.truncate(at);
        }
        let mut fresh = SummaryState::default();
        let _ = get_tail(&mut Cur { buf: &r, pos: 0 }, &mut fresh);
    }
    for cut in 0..raw.len() {
        let mut fresh = SummaryState::default();
        assert!(get_tail(
            &mut Cur {
                buf: &raw[..cut],
                pos: 0
            },
            &mut fresh
        )
        .is_err());
    }
}

#[test]
fn text_check_sees_changes() {
    let t = r#"{"a":1,"runs":[{"id":"x"}]}"#;
    let c = TextCheck::of(t);
    assert_eq!(c.runs_at, Some(6));
    assert!(c.matches(t.as_bytes()));
    assert!(!c.matches(br#"{"a":2,"runs":[{"id":"x"}]}"#));
}

#[test]
fn garbage_is_an_error_not_a_panic() {
    let st = sample();
    let blob = encode_runs(&st, &[]);
    let state = encode_head(&st, &TextCheck::default(), RunsRef::of(&blob, 0), None);
    let b64 = &base64_simd::STANDARD;
    let bytes = b64.decode_to_vec(&state).unwrap();
    let (runs_v1, _) = encode_v1(&st, &TextCheck::default());
    let runs = b64.decode_to_vec(&runs_v1).unwrap();
    let mut seed = 7u64;
    for _ in 0..2000 {
        let mut b = bytes.clone();
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let at = (seed >> 33) as usize % b.len();
        b[at] ^= (seed >> 17) as u8 | 1;
        if (seed >> 9).is_multiple_of(4) {
            b.truncate(at);
        }
        let text = b64.encode_to_string(&b);
        if let Ok(e) = split(text.as_bytes()) {
            let _ = e.state(&blob);
            let _ = e.view();
        }
        let mut r = runs.clone();
        let n = r.len();
        r[at % n] ^= (seed >> 23) as u8 | 1;
        let mut fresh = SummaryState::default();
        let _ = fill_runs(b64.encode_to_string(&r).as_bytes(), &mut fresh, (17, 17));
    }
    assert!(split(b"not base64 !").is_err());
    assert!(split(b"AAAA").is_err());
}
