//! The row order of llama's q/k projections: Hugging Face's and the GGUF's.
//!
//! Hugging Face's llama rotates the two halves of each head together
//! (`rotate_half`: row i pairs with row i + head_dim/2); llama.cpp's `llama`
//! architecture rotates adjacent rows (2i with 2i+1). Its converter therefore
//! reorders q_proj and k_proj rows inside each head
//! (`convert_hf_to_gguf.py`, `LlamaModel.permute`:
//! `w.reshape(n_head, 2, head_dim/2, in).swapaxes(1, 2).reshape(out, in)`,
//! with the KV head count for k), and transformers undoes it when it loads a
//! GGUF. The trainer learns on GGUF rows, so a LoRA's `lora_B` (out, r) for
//! q and k must be reordered for PEFT, and an imported one the other way;
//! `lora_A` (r, in) is untouched. Qwen2/Qwen3 are converted without it.

use crate::lora::Target;
use crate::model::Arch;

/// Whether the GGUF of `arch` stores q/k rows in the converter's order.
pub fn qk_rows_permuted(arch: Arch) -> bool {
    match arch {
        // llama.cpp's NORM rope for `llama` (SmolLM2, Llama, Mistral, ...).
        Arch::Llama => true,
        // NEOX rope: the HF order is kept.
        Arch::Qwen2 | Arch::Qwen3 => false,
    }
}

/// The heads whose rows `target`'s output holds, when they are permuted:
/// q has `n_head`, k has `n_head_kv`, other projections none.
pub fn permuted_heads(
    arch: Arch,
    target: Target,
    n_head: usize,
    n_head_kv: usize,
) -> Option<usize> {
    if !qk_rows_permuted(arch) {
        return None;
    }
    match target {
        Target::Q => Some(n_head),
        Target::K => Some(n_head_kv),
        _ => None,
    }
}

/// Which order a reordering produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowOrder {
    /// Hugging Face's (half-split heads): for a PEFT export.
    Hf,
    /// The GGUF's (interleaved heads): for an import.
    Gguf,
}

/// For a matrix of `n_rows` rows making `n_heads` heads, the source row of
/// each destination row when reordering into `to` (for `index_select` on
/// dim 0). Inside a head of size d, GGUF row 2i+j holds HF row j·d/2 + i.
pub fn row_sources(n_rows: usize, n_heads: usize, to: RowOrder) -> Result<Vec<u32>, String> {
    if n_heads == 0 || n_rows % n_heads != 0 || (n_rows / n_heads) % 2 != 0 {
        return Err(format!(
            "{n_rows} rows do not split into {n_heads} heads of an even size"
        ));
    }
    let head_dim = n_rows / n_heads;
    let half = head_dim / 2;
    let mut sources = Vec::with_capacity(n_rows);
    for head in 0..n_heads {
        let base = head * head_dim;
        for row in 0..head_dim {
            let source = match to {
                // HF row j·half + i comes from GGUF row 2i + j.
                RowOrder::Hf => 2 * (row % half) + row / half,
                // GGUF row 2i + j comes from HF row j·half + i.
                RowOrder::Gguf => (row % 2) * half + row / 2,
            };
            sources.push(u32::try_from(base + source).map_err(|e| e.to_string())?);
        }
    }
    Ok(sources)
}

/// `m` (rows, cols) with its rows reordered into `to`.
pub fn reorder_rows(
    m: &candle_core::Tensor,
    n_heads: usize,
    to: RowOrder,
) -> Result<candle_core::Tensor, String> {
    let (rows, _) = m.dims2().map_err(|e| e.to_string())?;
    let sources = row_sources(rows, n_heads, to)?;
    let index =
        candle_core::Tensor::from_vec(sources, rows, m.device()).map_err(|e| e.to_string())?;
    m.index_select(&index, 0).map_err(|e| e.to_string())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn one_head_of_eight_interleaves_its_halves() {
        // HF rows 0..8 = [a0 a1 a2 a3 | b0 b1 b2 b3] → GGUF [a0 b0 a1 b1 a2 b2 a3 b3].
        assert_eq!(
            row_sources(8, 1, RowOrder::Gguf).unwrap(),
            vec![0, 4, 1, 5, 2, 6, 3, 7]
        );
        assert_eq!(
            row_sources(8, 1, RowOrder::Hf).unwrap(),
            vec![0, 2, 4, 6, 1, 3, 5, 7]
        );
    }

    #[test]
    fn the_two_orders_undo_each_other_per_head() {
        for (rows, heads) in [(576, 9), (192, 3), (64, 4), (2, 1)] {
            let to_gguf = row_sources(rows, heads, RowOrder::Gguf).unwrap();
            let to_hf = row_sources(rows, heads, RowOrder::Hf).unwrap();
            for (dst, &src) in to_hf.iter().enumerate() {
                assert_eq!(to_gguf[src as usize] as usize, dst);
            }
            // Rows never leave their head.
            let head_dim = rows / heads;
            for (dst, &src) in to_gguf.iter().enumerate() {
                assert_eq!(dst / head_dim, src as usize / head_dim);
            }
        }
    }

    #[test]
    fn rows_that_are_not_whole_even_heads_are_refused() {
        assert!(row_sources(10, 3, RowOrder::Hf).is_err());
        assert!(row_sources(9, 3, RowOrder::Hf).is_err());
        assert!(row_sources(8, 0, RowOrder::Gguf).is_err());
    }

    #[test]
    fn only_llama_q_and_k_are_permuted() {
        assert_eq!(permuted_heads(Arch::Llama, Target::Q, 9, 3), Some(9));
        assert_eq!(permuted_heads(Arch::Llama, Target::K, 9, 3), Some(3));
        assert_eq!(permuted_heads(Arch::Llama, Target::V, 9, 3), None);
        assert_eq!(permuted_heads(Arch::Qwen3, Target::Q, 9, 3), None);
        assert_eq!(permuted_heads(Arch::Qwen2, Target::K, 9, 3), None);
    }
}
