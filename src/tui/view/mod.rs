//! The frame: the screen, the overlay over it, and the notice over both.
//! Views are pure functions of borrowed state.

mod frame;
pub mod wrap;

pub use frame::draw;
