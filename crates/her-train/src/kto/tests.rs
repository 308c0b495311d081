//! KTO's loss against hand-computed values and its limits, TRL's KL pairs,
//! gradient accumulation on the tiny model, and bad input.
#![allow(clippy::unwrap_used)]

use super::*;
use candle_core::{Device, Var};

fn objective(mismatched: bool) -> KtoLoss {
    KtoLoss {
        beta: 0.1,
        desirable_weight: 1.0,
        undesirable_weight: 1.0,
        mismatched,
    }
}

#[test]
fn the_loss_is_half_at_the_reference_and_rewards_sort_by_label() {
    let r = Tensor::from_slice(&[0.0f32, 0.0], 2, &Device::Cpu).unwrap();
    let (_, at_ref) = kto_loss(&objective(true), &r, &[true, false], 0.0, 2).unwrap();
    assert!((KtoMetrics::of(&at_ref).loss - 0.5).abs() < 1e-6);
    let r = Tensor::from_slice(&[3.0f32, -3.0], 2, &Device::Cpu).unwrap();
    let o = KtoLoss {
        beta: 1.0,
        ..objective(true)
    };
    let (_, sorted) = kto_loss(&o, &r, &[true, false], 0.0, 2).unwrap();
    let m = KtoMetrics::of(&sorted);
    assert_eq!(m.accuracy, 1.0);
    assert!((m.reward_gap - 6.0).abs() < 1e-6);
    // Both terms are 1 / (1 + e³).
    let expected = 1.0 / (1.0 + 3f64.exp());
    assert!((m.loss - expected).abs() < 1e-6, "{}", m.loss);
}

/// A case worked by hand, as TRL's `kto_loss` computes it.
///
/// Three replies, β = 0.5, desirable_weight 2, undesirable_weight 1:
/// rewards r = (1, −2, 0.5), labels (good, bad, good). The KL rows (each
/// prompt with the previous reply's completion) have policy − reference
/// log-probs (0.4, 1.1, −0.3): z₀ = max(0, 1.2 / 3) = 0.4.
///   row 0: 2·(1 − σ(0.5·(1 − 0.4)))    = 2·σ(−0.3)  = 0.851115
///   row 1: 1·(1 − σ(0.5·(0.4 + 2)))    = σ(−1.2)    = 0.231475
///   row 2: 2·(1 − σ(0.5·(0.5 − 0.4)))  = 2·σ(−0.05) = 0.975010
/// loss = mean = 2.057595 / 3 = 0.685865. The gradient by r_i is
/// −s_i·w_i·β·σ(x_i)σ(−x_i)/3 with x = (0.3, 1.2, 0.05):
/// (−0.081486, +0.029649, −0.083281).
#[test]
fn a_hand_computed_case_with_the_mismatched_reference_point() {
    let o = KtoLoss {
        beta: 0.5,
        desirable_weight: 2.0,
        undesirable_weight: 1.0,
        mismatched: true,
    };
    let kl: [f64; 3] = [0.4, 1.1, -0.3];
    let z0 = clamp_at_zero(kl.iter().sum::<f64>() / 3.0);
    assert!((z0 - 0.4).abs() < 1e-12);
    let r = Var::from_slice(&[1.0f32, -2.0, 0.5], 3, &Device::Cpu).unwrap();
    let (loss, scored) = kto_loss(&o, r.as_tensor(), &[true, false, true], z0, 3).unwrap();
    let value = f64::from(loss.to_scalar::<f32>().unwrap());
    assert!((value - 0.685865).abs() < 1e-6, "{value}");
    let m = KtoMetrics::of(&scored);
    assert!((m.loss - 0.685865).abs() < 1e-6 && m.kl == z0, "{m:?}");
    assert_eq!(m.accuracy, 1.0);
    let g = loss.backward().unwrap();
    let g = g.get(r.as_tensor()).unwrap().to_vec1::<f32>().unwrap();
    for (got, want) in g.iter().zip([-0.081486f32, 0.029649, -0.083281]) {
        assert!((got - want).abs() < 1e-6, "{g:?}");
    }
    // A negative mean KL is clamped: z₀ = 0.
    assert_eq!(clamp_at_zero(-0.2), 0.0);
    assert!(clamp_at_zero(f64::NAN).is_nan());
}

/// TRL's `_get_kl_dataset` shifts a batch's completions by one: row i
/// gets row i − 1's completion, row 0 the last row's.
#[test]
fn kl_rows_pair_each_prompt_with_the_previous_completion() {
    let t = |p: &[u32], c: &[u32]| Tokenized {
        ids: p.iter().chain(c).copied().collect(),
        completion_start: p.len(),
        earlier_turns: Vec::new(),
    };
    let rows = [t(&[1, 2], &[10]), t(&[3], &[20, 21]), t(&[4, 5, 6], &[30])];
    let kl = mismatched(&rows.iter().collect::<Vec<_>>(), 64);
    assert_eq!(kl[0], t(&[1, 2], &[30]));
    assert_eq!(kl[1], t(&[3], &[10]));
    assert_eq!(kl[2], t(&[4, 5, 6], &[20, 21]));
    // A pair longer than max_seq_len keeps its prompt and cuts the completion.
    let kl = mismatched(&rows.iter().collect::<Vec<_>>(), 4);
    assert_eq!(kl[2], t(&[4, 5, 6], &[20]));
}

/// |β·(r − z₀)| far past where e^x overflows f32: each loss is at its
/// limit (0 or the weight) and every gradient finite and at its limit, 0.
#[test]
fn extreme_rewards_give_the_analytic_limits_in_value_and_gradient() {
    let o = KtoLoss {
        desirable_weight: 2.0,
        ..objective(true)
    };
    let r = Var::from_slice(&[1e4f32, -1e4, 1e4, -1e4], 4, &Device::Cpu).unwrap();
    let labels = [true, true, false, false];
    let (loss, scored) = kto_loss(&o, r.as_tensor(), &labels, 0.0, 4).unwrap();
    let losses: Vec<f64> = scored.iter().map(|s| s.loss).collect();
    assert_eq!(losses, vec![0.0, 2.0, 1.0, 0.0]);
    assert_eq!(loss.to_scalar::<f32>().unwrap(), 0.75);
    let g = loss.backward().unwrap();
    let g = g.get(r.as_tensor()).unwrap().to_vec1::<f32>().unwrap();
    assert!(g.iter().all(|g| g.is_finite() && g.abs() < 1e-30), "{g:?}");
}

fn samples() -> Vec<KtoSample> {
    [
        "Darcy: Do you dance?",
        "Jane: Well?",
        "Lydia: Look!",
        "Kitty: Where?",
    ]
    .iter()
    .enumerate()
    .map(|(i, line)| {
        let chat = crate::testing::chat(line, "");
        let reply = if i % 2 == 0 {
            "<role_action>smiles</role_action>Indeed."
        } else {
            "Indeed, indeed."
        };
        KtoSample {
            prompt: chat.messages[..2].to_vec(),
            completion: vec![Message {
                role: "assistant".into(),
                content: reply.into(),
            }],
            label: i % 2 == 0,
        }
    })
    .collect()
}

/// Two micro-batches of two replies give the loss and gradients of one
/// batch of four (z₀ from the whole step's mismatched pairs).
#[test]
fn accumulated_micro_batches_equal_one_batch_of_all_replies() {
    use crate::testing::{assert_same_gradients, grad_diff, perturb, settings, tiny_trainer};
    use crate::train_loop::accumulate;
    let t = tiny_trainer(&settings());
    let tokenizer = crate::tokenizer::from_gguf(&t.model).unwrap();
    let samples = samples();
    let rows: Vec<Tokenized> = samples
        .iter()
        .map(|k| tokenize(&tokenizer, &k.as_sample()).unwrap())
        .collect();
    let labels: Vec<bool> = samples.iter().map(|k| k.label).collect();
    let reference = t.trainer.snapshot().unwrap();
    let refs = logp_values(&t.trainer, &rows, 4).unwrap();
    let mut o = KtoObjective {
        loss: KtoLoss {
            beta: 0.5,
            desirable_weight: 1.5,
            ..objective(true)
        },
        rows,
        labels,
        refs,
        reference,
        max_len: 1024,
        ..KtoObjective::default()
    };
    let mut step = |micro: Vec<Vec<usize>>| {
        let StepData::Ready { batches, .. } = o.plan_step(&t.trainer, micro).unwrap() else {
            panic!("a planned step is ready");
        };
        let pass = accumulate(&mut o, &t.trainer, &batches, 0, 0).unwrap();
        assert!(pass.complete);
        (pass.grads, o.step_metrics())
    };
    // A drift whose mismatched KL estimate is positive, so z₀ is not
    // clamped to 0 (some random drifts estimate it below 0).
    let drifted = (1..32).find(|seed| {
        perturb(&t.trainer, *seed);
        step(vec![vec![0, 1, 2, 3]]).1.kl > 0.01
    });
    assert!(drifted.is_some(), "no drift with a positive KL estimate");
    let (one, m1) = step(vec![vec![0, 1, 2, 3]]);
    let (two, m2) = step(vec![vec![0, 1], vec![2, 3]]);
    assert!((m1.loss - m2.loss).abs() < 1e-5, "{m1:?} vs {m2:?}");
    assert!((m1.kl - m2.kl).abs() < 1e-6, "{m1:?} vs {m2:?}");
    assert_same_gradients(&one, &two);
    // The reference pass put the policy's values back.
    let (again, _) = step(vec![vec![0, 1, 2, 3]]);
    assert_eq!(grad_diff(&one, &again).0, 0.0);
}

#[test]
fn an_empty_completion_is_an_error_naming_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kto.jsonl");
    let good = serde_json::to_string(&samples()[0]).unwrap();
    let empty = r#"{"prompt":[{"role":"user","content":"Hi"}],"completion":[{"role":"assistant","content":"  "}],"label":true}"#;
    let none = r#"{"prompt":[{"role":"user","content":"Hi"}],"completion":[],"label":false}"#;
    std::fs::write(&path, format!("{good}\n\n{empty}\n")).unwrap();
    let err = read_kto_jsonl(&path).unwrap_err().to_string();
    assert_eq!(
        err,
        format!(
            "'{}' line 3: the completion is empty (its assistant message has no text)",
            path.display()
        )
    );
    std::fs::write(&path, format!("{none}\n{good}\n")).unwrap();
    let err = read_kto_jsonl(&path).unwrap_err().to_string();
    assert!(
        err.contains("line 1: the completion is empty (no messages)"),
        "{err}"
    );
    std::fs::write(&path, format!("{good}\n")).unwrap();
    assert_eq!(read_kto_jsonl(&path).unwrap().len(), 1);
}
