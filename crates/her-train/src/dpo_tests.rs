//! DPO's loss against hand-computed values and its limits, gradient
//! accumulation through the loop on the tiny model, and TRL lines.
#![allow(clippy::unwrap_used)]

use super::*;
use candle_core::Device;

#[test]
fn the_loss_is_log_two_at_the_reference_and_falls_as_the_margin_grows() {
    let t = |v: &[f32]| Tensor::from_slice(v, v.len(), &Device::Cpu).unwrap();
    let (rc, rr) = (t(&[-10.0, -12.0]), t(&[-11.0, -9.0]));
    let (_, at_ref) = dpo_loss(0.1, (&rc, &rr), (&rc, &rr)).unwrap();
    assert!((at_ref.loss - std::f64::consts::LN_2).abs() < 1e-6);
    assert_eq!((at_ref.margin, at_ref.accuracy), (0.0, 0.0));
    // Chosen up by 2 nats, rejected down by 3: β·5 = 0.5 per pair.
    let (pc, pr) = (t(&[-8.0, -10.0]), t(&[-14.0, -12.0]));
    let (_, better) = dpo_loss(0.1, (&pc, &pr), (&rc, &rr)).unwrap();
    assert!((better.margin - 0.5).abs() < 1e-5);
    assert_eq!(better.accuracy, 1.0);
    let expected = (1.0 + (-0.5f64).exp()).ln();
    assert!((better.loss - expected).abs() < 1e-6, "{}", better.loss);
}

/// β·margin far past where e^x overflows f32 (~88): the loss is
/// −log σ(x)'s limit (0, or −x) and the gradient −β·σ(−x)/n's (0, or −β/n).
#[test]
fn extreme_margins_give_the_analytic_limits_in_value_and_gradient() {
    let dev = Device::Cpu;
    let beta = 0.1;
    // Pair 0: β·margin = +1000; pair 1: −1000.
    let pc = candle_core::Var::from_slice(&[5000.0f32, -5000.0], 2, &dev).unwrap();
    let pr = candle_core::Var::from_slice(&[-5000.0f32, 5000.0], 2, &dev).unwrap();
    let zeros = Tensor::zeros(2, candle_core::DType::F32, &dev).unwrap();
    let (loss, m) = dpo_loss(beta, (pc.as_tensor(), pr.as_tensor()), (&zeros, &zeros)).unwrap();
    assert_eq!(m.loss, 500.0, "{m:?}");
    assert_eq!(m.accuracy, 0.5);
    let grads = loss.backward().unwrap();
    let g = |v: &candle_core::Var| grads.get(v.as_tensor()).unwrap().to_vec1::<f32>().unwrap();
    let (gc, gr) = (g(&pc), g(&pr));
    let want = (beta / 2.0) as f32;
    assert!(gc[0].abs() < 1e-12 && gr[0].abs() < 1e-12, "{gc:?} {gr:?}");
    assert!(
        (gc[1] + want).abs() < 1e-7 && (gr[1] - want).abs() < 1e-7,
        "{gc:?} {gr:?}"
    );
}

fn pairs() -> Vec<PairSample> {
    [
        "Darcy: Do you dance?",
        "Jane: Well?",
        "Lydia: Look!",
        "Kitty: Where?",
    ]
    .iter()
    .map(|line| {
        let prompt = crate::testing::chat(line, "").messages[..2].to_vec();
        PairSample {
            prompt,
            chosen: "<role_action>smiles</role_action>Indeed.".into(),
            rejected: "Indeed, indeed.".into(),
        }
    })
    .collect()
}

/// Two micro-batches of two pairs, weighted by their share, give the
/// loss and gradients of one batch of four.
#[test]
fn accumulated_micro_batches_equal_one_batch_of_all_pairs() {
    use crate::testing::{assert_same_gradients, perturb, settings, tiny_trainer};
    use crate::train_loop::accumulate;
    let t = tiny_trainer(&settings());
    let tokenizer = crate::tokenizer::from_gguf(&t.model).unwrap();
    let pairs: Vec<TokenizedPair> = pairs()
        .iter()
        .map(|p| tokenize_pair(&tokenizer, p).unwrap())
        .collect();
    let train_refs = reference(&t.trainer, &pairs, 4).unwrap();
    perturb(&t.trainer, 9);
    let mut o = DpoObjective {
        beta: 0.5,
        train: pairs,
        train_refs,
        ..DpoObjective::default()
    };
    let mut step = |micro: Vec<Vec<usize>>| {
        let StepData::Ready { batches, .. } = o.plan_step(micro) else {
            panic!("a planned step is ready");
        };
        let pass = accumulate(&mut o, &t.trainer, &batches, 0, 0).unwrap();
        assert!(pass.complete);
        (pass.grads, o.summarize())
    };
    let (one, m1) = step(vec![vec![0, 1, 2, 3]]);
    let (two, m2) = step(vec![vec![0, 1], vec![2, 3]]);
    assert!((m1.loss - m2.loss).abs() < 1e-5, "{m1:?} vs {m2:?}");
    assert!(
        (m1.metrics.margin - m2.metrics.margin).abs() < 1e-5,
        "{m1:?} vs {m2:?}"
    );
    assert!(
        (m1.loss - std::f64::consts::LN_2).abs() > 1e-3,
        "the policy moved: {m1:?}"
    );
    assert_same_gradients(&one, &two);
}

#[test]
fn trl_lines_parse_and_bad_ones_name_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dpo.jsonl");
    let good = r#"{"prompt":[{"role":"user","content":"Hi"}],"chosen":[{"role":"assistant","content":"A"}],"rejected":[{"role":"assistant","content":"B"}]}"#;
    let bad = r#"{"prompt":[],"chosen":[{"role":"user","content":"A"}],"rejected":[]}"#;
    std::fs::write(&path, format!("{good}\n")).unwrap();
    let pairs = read_dpo_jsonl(&path).unwrap();
    assert_eq!(
        (pairs[0].chosen.as_str(), pairs[0].rejected.as_str()),
        ("A", "B")
    );
    std::fs::write(&path, format!("{good}\n{bad}\n")).unwrap();
    let err = read_dpo_jsonl(&path).unwrap_err().to_string();
    assert!(err.contains("line 2") && err.contains("'chosen'"), "{err}");
}
