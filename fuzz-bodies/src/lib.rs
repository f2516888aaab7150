//! The bodies of the fuzz targets under `fuzz/fuzz_targets/`, as plain functions of the input bytes: cargo-fuzz
//! calls them from libFuzzer, and `cargo test` calls them on stable over the committed seed corpus
//! (`fuzz/corpus/<target>/`) and thousands of seeded random inputs, so that they never rot unbuilt.
//!
//! Each body panics when a property of the code under test does not hold; an input it cannot use is ignored.

mod canonical_form;
mod cast_reader;
mod event_parse;
mod hec_answer;
mod hec_body;
mod http_body;
mod line_splitter;
mod seek_index;
mod segment_scan;
mod verify_lines;

pub use canonical_form::canonical_form;
pub use cast_reader::cast_reader;
pub use event_parse::event_parse;
pub use hec_answer::hec_answer;
pub use hec_body::hec_body;
pub use http_body::{http_body, http_body_input};
pub use line_splitter::{line_splitter, line_splitter_input};
pub use seek_index::seek_index;
pub use segment_scan::segment_scan;
pub use verify_lines::verify_lines;

/// A target's body.
pub type Body = fn(&[u8]);

/// Every target: its name (the corpus folder and the cargo-fuzz binary) and its body.
pub const TARGETS: [(&str, Body); 10] = [
    ("canonical_form", canonical_form),
    ("cast_reader", cast_reader),
    ("event_parse", event_parse),
    ("hec_answer", hec_answer),
    ("hec_body", hec_body),
    ("http_body", http_body),
    ("line_splitter", line_splitter),
    ("seek_index", seek_index),
    ("segment_scan", segment_scan),
    ("verify_lines", verify_lines),
];
