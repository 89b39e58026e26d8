//! The interpreter's backward sweep through `index` and `slice` (issue 19):
//! it adds each cotangent into its window of the operand's cotangent, so the
//! bytes it allocates are about one operand, not one padded operand per row
//! read (which running the transpose rule, an `expand` and a `pad`, made).
//! Counted by a global allocator: one test in this file, so nothing else
//! allocates while it counts.

use batchgraph::{Interpreter, Program, Rng, Values};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

/// The system allocator, counting the bytes asked for.
struct Counting;

static ALLOCATED: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATED.fetch_add(layout.size(), Ordering::Relaxed);
        System.alloc(layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCATED.fetch_add(layout.size(), Ordering::Relaxed);
        System.alloc_zeroed(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static COUNTING: Counting = Counting;

/// Every row of a [64, 1000] param read by `index` (and every pair of rows by
/// `slice`), each summed: the gradient's run allocates less than 6 operands'
/// bytes (the row values, their cotangents, the operand's cotangent), where
/// padding each row's cotangent to the operand allocated 64.
#[test]
fn the_backward_of_index_and_slice_allocates_one_operand_not_one_per_row() {
    let (rows, width) = (64, 1000);
    let operand_bytes = rows * width * std::mem::size_of::<f64>();
    for (read, count) in [("index(t, {})", rows), ("slice(t, 0, {}, {} + 1)", rows)] {
        let terms: Vec<String> = (0..count)
            .map(|r| {
                format!(
                    "sum({})",
                    read.replace("{} + 1", &(r + 1).to_string())
                        .replace("{}", &r.to_string())
                )
            })
            .collect();
        let text = format!("param t: [{rows}, {width}]\nout s = {}", terms.join(" + "));
        let program = Program::parse("t", &text).unwrap();
        let mut rng = Rng::new(3);
        let values: Values<f64> = [("t".to_string(), rng.tensor(&[rows, width], -1.0, 1.0))].into();
        let interpreter = Interpreter::new(&program);
        let before = ALLOCATED.load(Ordering::Relaxed);
        let gradients = interpreter.gradient(&values).unwrap();
        let allocated = ALLOCATED.load(Ordering::Relaxed) - before;
        assert!(gradients.grads[0].1.iter().all(|&g| g == 1.0), "{read}");
        assert!(
            allocated < 6 * operand_bytes,
            "{read}: {allocated} bytes allocated, {operand_bytes} per operand"
        );
    }
}
