//! Rotary position embedding on (b, t, heads, d) in candle ops, both pair
//! layouts (NORM: adjacent pairs; NEOX: halves), with the same per-token
//! positions the fused op uses for packed rows. Backward is the inverse
//! rotation (same cos, negated sin); the node keeps only the tables.

use candle_core::{D, Result, Tensor};

use super::attach::{Backward, attach1};
use crate::model::ops::RopeStyle;

/// Per-token cos and sin, (b, t, 1, d/2) on x's device, from the fused op's
/// tables ([`crate::model::ops::Rope::tables`]).
pub(crate) struct RopeTables {
    pub style: RopeStyle,
    pub cos: Tensor,
    pub sin: Tensor,
}

/// x (b, t, heads, d) → x rotated by each token's angles.
pub(crate) fn rope(x: &Tensor, tables: RopeTables) -> Result<Tensor> {
    let y = rotate(&x.detach(), &tables, &tables.sin)?;
    attach1(x, y, RopeBwd(tables))
}

/// The rotation by (cos, sin): for a pair (x0, x1),
/// (x0·c − x1·s, x0·s + x1·c).
fn rotate(x: &Tensor, tables: &RopeTables, sin: &Tensor) -> Result<Tensor> {
    let (b, t, h, d) = x.dims4()?;
    let half = d / 2;
    let (x0, x1, c, s) = match tables.style {
        // Pairs (x[2i], x[2i+1]): a trailing axis of two.
        RopeStyle::Norm => {
            let pairs = x.reshape((b, t, h, half, 2))?;
            (
                pairs.narrow(D::Minus1, 0, 1)?,
                pairs.narrow(D::Minus1, 1, 1)?,
                tables.cos.unsqueeze(D::Minus1)?,
                sin.unsqueeze(D::Minus1)?,
            )
        }
        // Pairs (x[i], x[i + d/2]).
        RopeStyle::Neox => (
            x.narrow(D::Minus1, 0, half)?,
            x.narrow(D::Minus1, half, half)?,
            tables.cos.clone(),
            sin.clone(),
        ),
    };
    let y0 = (x0.broadcast_mul(&c)? - x1.broadcast_mul(&s)?)?;
    let y1 = (x0.broadcast_mul(&s)? + x1.broadcast_mul(&c)?)?;
    Tensor::cat(&[y0, y1], D::Minus1)?.reshape((b, t, h, d))
}

struct RopeBwd(RopeTables);

impl Backward for RopeBwd {
    fn name(&self) -> &'static str {
        "portable_rope"
    }

    fn backward(
        &self,
        _inputs: &[&Tensor],
        _out: &Tensor,
        grad: &Tensor,
    ) -> Result<Vec<Option<Tensor>>> {
        let dx = rotate(grad, &self.0, &self.0.sin.neg()?)?;
        Ok(vec![Some(dx)])
    }
}
