//! One decoder block: pre-norm attention (GQA, rope, optional q/k norm and
//! q/k/v biases) and a SiLU-gated MLP, each projection frozen with an
//! optional LoRA branch.

use std::sync::Arc;

use candle_core::{Tensor, Var};

use super::frozen::FrozenLinear;
use super::kernels::OpPath;
use super::load::GgufTensors;
use super::lora_linear::LoraLinear;
use super::ops::{CausalAttention, RmsNorm, Rope, SiluMul};
use super::{ModelShape, Segments};
use crate::error::TrainError;
use crate::lora::{LoraAdapter, Target};

/// A frozen projection and its LoRA branch.
#[derive(Clone)]
pub(crate) struct Projection {
    pub base: FrozenLinear,
    pub lora: Option<LoraAdapter>,
    pub n_in: usize,
    pub n_out: usize,
}

impl Projection {
    fn load(
        src: &mut GgufTensors,
        layer: usize,
        target: Target,
        n_in: usize,
        n_out: usize,
        with_bias: bool,
    ) -> Result<Self, TrainError> {
        let name = format!("blk.{layer}.{}", target.gguf_name());
        let weight = src.frozen(&format!("{name}.weight"), [n_out, n_in])?;
        let bias = if with_bias {
            src.optional_bias(&format!("{name}.bias"), n_out)?
        } else {
            None
        };
        Ok(Self {
            base: FrozenLinear::new(weight, bias),
            lora: None,
            n_in,
            n_out,
        })
    }

    /// x (m, in) → (m, out). Without `grad` the LoRA factors enter as
    /// detached tensors: nothing of this pass is recorded for a backward.
    fn forward(
        &self,
        x: &Tensor,
        mask_key: Option<&[u64]>,
        grad: bool,
        path: OpPath,
    ) -> Result<Tensor, TrainError> {
        let Some(lora) = &self.lora else {
            return Ok(self.base.apply(x, path)?);
        };
        let op = LoraLinear::new(
            self.base.weight().clone(),
            lora.scale,
            mask_key.map(|key| (lora.dropout, key)),
        );
        let (a, b) = if grad {
            (lora.a.as_tensor().clone(), lora.b.as_tensor().clone())
        } else {
            (lora.a.detach(), lora.b.detach())
        };
        Ok(op.apply(x, &a, &b, self.base.bias(), path)?)
    }
}

/// What every block of one forward pass shares.
pub(crate) struct Pass {
    pub b: usize,
    pub t: usize,
    pub rope: Rope,
    /// The samples packed into each row; `None`: one per row.
    pub segments: Option<Arc<Segments>>,
    /// Multiplies the attention scores before the softmax.
    pub attn_scale: f32,
    /// (seed, step) of the dropout masks; `None` in evaluation.
    pub dropout: Option<(u64, u64)>,
    /// Record the pass for a backward; `false` for held-out and reference
    /// passes (candle has no no-grad mode: the LoRA enters detached).
    pub grad: bool,
    /// The op set: fused CPU kernels or the portable candle ops.
    pub path: OpPath,
}

#[derive(Clone)]
pub(crate) struct Block {
    index: usize,
    attn_norm: RmsNorm,
    /// Q, K, V, O, Gate, Up, Down (see [`Target::index`]).
    proj: [Projection; 7],
    q_norm: Option<RmsNorm>,
    k_norm: Option<RmsNorm>,
    ffn_norm: RmsNorm,
    n_head: usize,
    n_head_kv: usize,
    head_dim: usize,
}

impl Block {
    pub fn load(src: &mut GgufTensors, s: &ModelShape, i: usize) -> Result<Self, TrainError> {
        let (e, q, kv, ff) = (
            s.n_embd,
            s.n_head * s.head_dim,
            s.n_head_kv * s.head_dim,
            s.n_ff,
        );
        let p = |src: &mut GgufTensors, t, n_in, n_out| {
            Projection::load(
                src,
                i,
                t,
                n_in,
                n_out,
                s.qkv_bias && matches!(t, Target::Q | Target::K | Target::V),
            )
        };
        let norm = |src: &mut GgufTensors, name: &str, n| {
            src.norm(&format!("blk.{i}.{name}.weight"), n, s.rms_eps)
        };
        let proj = [
            p(src, Target::Q, e, q)?,
            p(src, Target::K, e, kv)?,
            p(src, Target::V, e, kv)?,
            p(src, Target::O, q, e)?,
            p(src, Target::Gate, e, ff)?,
            p(src, Target::Up, e, ff)?,
            p(src, Target::Down, ff, e)?,
        ];
        let (q_norm, k_norm) = if s.qk_norm {
            (
                Some(norm(src, "attn_q_norm", s.head_dim)?),
                Some(norm(src, "attn_k_norm", s.head_dim)?),
            )
        } else {
            (None, None)
        };
        Ok(Self {
            index: i,
            attn_norm: norm(src, "attn_norm", e)?,
            proj,
            q_norm,
            k_norm,
            ffn_norm: norm(src, "ffn_norm", e)?,
            n_head: s.n_head,
            n_head_kv: s.n_head_kv,
            head_dim: s.head_dim,
        })
    }

    pub fn projection(&self, t: Target) -> &Projection {
        &self.proj[t.index()]
    }

    pub fn projection_mut(&mut self, t: Target) -> &mut Projection {
        &mut self.proj[t.index()]
    }

    /// The LoRA A and B variables of this block's projections.
    pub fn lora_vars(&self) -> impl Iterator<Item = &Var> {
        self.proj
            .iter()
            .filter_map(|p| p.lora.as_ref())
            .flat_map(|l| [&l.a, &l.b])
    }

    fn project(&self, t: Target, x: &Tensor, pass: &Pass) -> Result<Tensor, TrainError> {
        let key = pass
            .dropout
            .map(|(seed, step)| [seed, step, self.index as u64, t.index() as u64]);
        self.projection(t)
            .forward(x, key.as_ref().map(|k| &k[..]), pass.grad, pass.path)
    }

    /// x: (b·t, embd) → (b·t, embd).
    pub fn forward(&self, x: &Tensor, pass: &Pass) -> Result<Tensor, TrainError> {
        let (b, t, d) = (pass.b, pass.t, self.head_dim);
        let (nh, nkv) = (self.n_head, self.n_head_kv);

        // 1. Attention input norm: (m, e)
        let h = self.attn_norm.apply(x, pass.path)?;
        // 2. Projections: q (m, nh·d), k and v (m, nkv·d)
        let q = self.project(Target::Q, &h, pass)?.reshape((b, t, nh, d))?;
        let k = self.project(Target::K, &h, pass)?.reshape((b, t, nkv, d))?;
        let v = self.project(Target::V, &h, pass)?.reshape((b, t, nkv, d))?;
        // 3. qwen3: per-head RMSNorm of q and k, before rope
        let q = match &self.q_norm {
            Some(n) => n.apply(&q, pass.path)?,
            None => q,
        };
        let k = match &self.k_norm {
            Some(n) => n.apply(&k, pass.path)?,
            None => k,
        };
        // 4. Rope on (b, t, heads, d)
        let q = pass.rope.apply(&q, pass.path)?;
        let k = pass.rope.apply(&k, pass.path)?;
        // 5. Causal attention, query head h reading KV head h / rep, straight
        //    from the (b, t, heads, d) layout, inside each packed sample:
        //    context (m, nh·d) (a fresh op per call: it keeps this block's
        //    log-sum-exp)
        let ctx = attention(&q, &k, &v, pass)?;
        // 6. Output projection, residual
        let x = (x + self.project(Target::O, &ctx, pass)?)?;
        // 7. MLP: down(silu(gate(h)) ⊙ up(h)), residual
        let h = self.ffn_norm.apply(&x, pass.path)?;
        let gate = self.project(Target::Gate, &h, pass)?;
        let up = self.project(Target::Up, &h, pass)?;
        let act = SiluMul::apply(&gate, &up, pass.path)?;
        Ok((x + self.project(Target::Down, &act, pass)?)?)
    }
}

/// Causal attention for this pass's op set: both are tiled and keep only
/// the log-sum-exp per row for backward.
fn attention(q: &Tensor, k: &Tensor, v: &Tensor, pass: &Pass) -> candle_core::Result<Tensor> {
    match pass.path {
        OpPath::Fused => CausalAttention::new(pass.attn_scale)
            .with_segments(pass.segments.clone())
            .forward(q, k, v),
        OpPath::Portable => super::portable::attention::causal_attention(
            q,
            k,
            v,
            pass.attn_scale,
            pass.segments.clone(),
        ),
    }
}
