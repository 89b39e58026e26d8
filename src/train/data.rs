//! Training data: one array per input of the per-example program, named as
//! the input, the leading axis the examples. Read from numpy's `.npz` or
//! from CSV, and checked whole before training starts: every input present,
//! each example of the input's shape, the same number of examples in each,
//! at least one, every value finite, and the file no larger than
//! [`MAX_DATA_BYTES`] (checked before anything is read).

use crate::error::{Error, Result};
use crate::ir::{Decl, Program};
use crate::runtime::{Rng, Tensor, Values};
use ndarray::{Axis, IxDyn};
use std::io::{BufRead, BufReader, Read, Seek};
use std::path::Path;

/// The largest data file, and the most bytes of values one may hold (2 GiB):
/// a larger one is refused before it is read.
pub const MAX_DATA_BYTES: u64 = 2 << 30;

/// The examples: each input's values stacked on a leading axis.
#[derive(Clone, Debug)]
pub struct Dataset {
    /// The arrays, in the program's input order: `[examples, ...input shape]`.
    pub arrays: Vec<(String, Tensor<f64>)>,
    /// How many examples.
    pub len: usize,
}

impl Dataset {
    /// Checks `arrays` against the inputs of `program`: every input present,
    /// each example of its shape, equal counts, at least one example, finite.
    /// `source` names the data in errors. Arrays the program does not read are left out.
    pub fn new(program: &Program, source: &str, mut arrays: Values<f64>) -> Result<Dataset> {
        let mut checked = vec![];
        let mut len: Option<(usize, String)> = None;
        let mut held: Vec<String> = arrays.keys().cloned().collect();
        held.sort();
        for Decl { name, shape } in &program.inputs {
            let Some(array) = arrays.remove(name) else {
                return Err(Error::Values(format!(
                    "{source}: no array `{name}` for the input `{name}: {shape}` (it has {})",
                    list(&held)
                )));
            };
            let dims = array.shape();
            if dims.len() != shape.rank() + 1 || dims[1..] != *shape.dims() {
                return Err(Error::Values(format!(
                    "{source}: `{name}` has shape {dims:?}; the input `{name}: {shape}` needs [examples, {}]",
                    shape.dims().iter().map(usize::to_string).collect::<Vec<_>>().join(", ")
                )));
            }
            let n = dims[0];
            match &len {
                Some((m, other)) if *m != n => {
                    return Err(Error::Values(format!(
                        "{source}: `{name}` has {n} examples but `{other}` has {m}"
                    )))
                }
                _ => len = Some((n, name.clone())),
            }
            if let Some((flat, v)) = array.iter().enumerate().find(|(_, v)| !v.is_finite()) {
                let per_example = shape.dims().iter().product::<usize>().max(1);
                return Err(Error::Values(format!(
                    "{source}: `{name}` holds {v} (example {}, element {}): training data must be finite",
                    flat / per_example,
                    flat % per_example
                )));
            }
            checked.push((name.clone(), array));
        }
        let len = len.map_or(0, |(n, _)| n);
        if len == 0 {
            return Err(Error::Values(format!("{source}: no examples")));
        }
        Ok(Dataset { arrays: checked, len })
    }

    /// Reads `path` by its extension (`.npz` or `.csv`) and checks it against `program`'s inputs.
    pub fn load(program: &Program, path: &Path) -> Result<Dataset> {
        let source = path.display().to_string();
        let size = std::fs::metadata(path)
            .map_err(|e| Error::Io(format!("{source}: {e}")))?
            .len();
        check_size(&source, size)?;
        let arrays = match path.extension().and_then(|e| e.to_str()) {
            Some("npz") => read_npz(
                &source,
                std::fs::File::open(path).map_err(|e| Error::Io(format!("{source}: {e}")))?,
            )?,
            Some("csv") => read_csv(
                program,
                &source,
                std::fs::File::open(path).map_err(|e| Error::Io(format!("{source}: {e}")))?,
            )?,
            _ => {
                return Err(Error::Unsupported(format!(
                    "{source}: data must be .npz (one array per input) or .csv (a column per element)"
                )))
            }
        };
        Dataset::new(program, &source, arrays)
    }

    /// The examples at `indices`, one array per input (`[indices.len(), ...]`).
    pub fn rows(&self, indices: &[usize]) -> Values<f64> {
        self.arrays
            .iter()
            .map(|(name, a)| (name.clone(), a.select(Axis(0), indices)))
            .collect()
    }

    /// Every example, in order.
    pub fn all(&self) -> Values<f64> {
        self.arrays.iter().cloned().collect()
    }
}

/// The examples' indices in an order shuffled by `rng` (Fisher-Yates).
pub fn shuffled(len: usize, rng: &mut Rng) -> Vec<usize> {
    let mut order: Vec<usize> = (0..len).collect();
    for i in (1..len).rev() {
        order.swap(i, rng.below(i + 1));
    }
    order
}

fn list(names: &[String]) -> String {
    match names.is_empty() {
        true => "no arrays".into(),
        false => names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", "),
    }
}

fn check_size(source: &str, bytes: u64) -> Result<()> {
    if bytes > MAX_DATA_BYTES {
        return Err(Error::Limit {
            limit: MAX_DATA_BYTES,
            message: format!(
                "{source}: {bytes} bytes is more than the {MAX_DATA_BYTES} bytes (2 GiB) the data may have"
            ),
        });
    }
    Ok(())
}

/// The arrays of an `.npz`, as f64 (stored as f64, f32, or integers).
pub fn read_npz<R: Read + Seek>(source: &str, reader: R) -> Result<Values<f64>> {
    let bad = |e: &dyn std::fmt::Display| Error::Values(format!("{source}: not a readable .npz: {e}"));
    let mut zip = zip::ZipArchive::new(reader).map_err(|e| bad(&e))?;
    // Declared sizes first: a small file can still unpack to more than memory holds.
    let mut total = 0u64;
    for i in 0..zip.len() {
        let entry = zip.by_index_raw(i).map_err(|e| bad(&e))?;
        total = total.saturating_add(entry.size());
    }
    check_size(&format!("{source} (unpacked)"), total)?;
    // Then each array's header: it declares the shape, which could be far
    // more than the file holds (a few bytes claiming 10 GB).
    for i in 0..zip.len() {
        let entry = zip.by_index(i).map_err(|e| bad(&e))?;
        let (name, held) = (entry.name().trim_end_matches(".npy").to_string(), entry.size());
        let (shape, element) = npy_header(entry).map_err(|e| Error::Values(format!("{source}: `{name}`: {e}")))?;
        let declared = shape
            .iter()
            .try_fold(element, |n, &d| n.checked_mul(d))
            .unwrap_or(u64::MAX);
        check_size(
            &format!("{source}: `{name}` declares shape {shape:?} of {element}-byte elements"),
            declared,
        )?;
        if declared > held {
            return Err(Error::Values(format!(
                "{source}: `{name}` declares shape {shape:?} of {element}-byte elements ({declared} bytes) but holds {held} bytes"
            )));
        }
    }
    let mut npz = ndarray_npy::NpzReader::new(zip.into_inner()).map_err(|e| bad(&e))?;
    let names = npz.names().map_err(|e| bad(&e))?;
    let mut arrays = Values::new();
    for name in names {
        let array = read_npz_array(&mut npz, &name).map_err(|e| Error::Values(format!("{source}: `{name}`: {e}")))?;
        arrays.insert(name, array);
    }
    Ok(arrays)
}

/// The shape and the element size an `.npy` header declares, read from the header alone.
fn npy_header(mut reader: impl Read) -> std::result::Result<(Vec<u64>, u64), String> {
    let short = |e: std::io::Error| format!("not an .npy array: {e}");
    let mut magic = [0u8; 8];
    reader.read_exact(&mut magic).map_err(short)?;
    if &magic[..6] != b"\x93NUMPY" {
        return Err("not an .npy array (no NUMPY magic)".into());
    }
    let length = match magic[6] {
        1 => {
            let mut b = [0u8; 2];
            reader.read_exact(&mut b).map_err(short)?;
            u16::from_le_bytes(b) as usize
        }
        2 | 3 => {
            let mut b = [0u8; 4];
            reader.read_exact(&mut b).map_err(short)?;
            u32::from_le_bytes(b) as usize
        }
        v => return Err(format!("an .npy of unknown version {v}")),
    };
    // numpy writes headers of a few hundred bytes; one of megabytes is not one.
    if length > 1 << 16 {
        return Err(format!("an .npy header of {length} bytes"));
    }
    let mut header = vec![0u8; length];
    reader.read_exact(&mut header).map_err(short)?;
    let header = String::from_utf8_lossy(&header);
    let unreadable = || format!("an .npy header numpy would not write: {}", header.trim());
    let after = |key: &str| header.find(key).map(|at| &header[at + key.len()..]);
    let descr = after("'descr':")
        .and_then(|rest| rest.split(['\'', '"']).nth(1))
        .ok_or_else(unreadable)?;
    let element: u64 = descr
        .trim_start_matches(['<', '>', '|', '='])
        .get(1..)
        .and_then(|digits| digits.parse().ok())
        .ok_or_else(unreadable)?;
    let tuple = after("'shape':")
        .and_then(|rest| Some(&rest[rest.find('(')? + 1..rest.find(')')?]))
        .ok_or_else(unreadable)?;
    let shape = tuple
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .map(|d| d.parse::<u64>().map_err(|_| unreadable()))
        .collect::<std::result::Result<Vec<u64>, String>>()?;
    Ok((shape, element))
}

/// One array, converted to f64 from whichever element type it was stored in.
fn read_npz_array<R: Read + Seek>(
    npz: &mut ndarray_npy::NpzReader<R>,
    name: &str,
) -> std::result::Result<Tensor<f64>, String> {
    use ndarray_npy::{ReadNpyError, ReadNpzError};
    macro_rules! try_type {
        ($t:ty) => {
            match npz.by_name::<ndarray::OwnedRepr<$t>, IxDyn>(name) {
                Ok(a) => return Ok(a.mapv(|v| v as f64)),
                Err(ReadNpzError::Npy(ReadNpyError::WrongDescriptor(_))) => {}
                Err(e) => return Err(e.to_string()),
            }
        };
    }
    try_type!(f64);
    try_type!(f32);
    try_type!(i64);
    try_type!(i32);
    try_type!(u8);
    Err("not an array of f64, f32, i64, i32 or u8".into())
}

/// The arrays of a CSV with a header: an input `x` of one element is the
/// column `x`; any other is the columns `x_0`, `x_1`, ... (its elements in
/// row-major order). Other columns are ignored.
pub fn read_csv<R: Read>(program: &Program, source: &str, reader: R) -> Result<Values<f64>> {
    let mut lines = BufReader::new(reader).lines().enumerate();
    let read_err = |e: std::io::Error| Error::Io(format!("{source}: {e}"));
    let header = match lines.next() {
        Some((_, line)) => line.map_err(read_err)?,
        None => return Err(Error::Values(format!("{source}: empty file (no header line)"))),
    };
    let columns: Vec<&str> = header.split(',').map(str::trim).collect();
    // For each input, the column of each of its elements.
    let mut wanted: Vec<(String, Vec<usize>, Vec<usize>)> = vec![];
    for Decl { name, shape } in &program.inputs {
        let size = shape.dims().iter().product::<usize>();
        let names: Vec<String> = match size {
            1 => vec![name.clone()],
            _ => (0..size).map(|k| format!("{name}_{k}")).collect(),
        };
        let mut at = vec![];
        for column in &names {
            let Some(i) = columns.iter().position(|c| c == column) else {
                return Err(Error::Values(format!(
                    "{source}: no column `{column}` for the input `{name}: {shape}` (its {size} element(s) are the columns {})",
                    if size == 1 { format!("`{name}`") } else { format!("`{name}_0` .. `{name}_{}`", size - 1) }
                )));
            };
            at.push(i);
        }
        wanted.push((name.clone(), shape.dims().to_vec(), at));
    }
    let mut values: Vec<Vec<f64>> = vec![vec![]; wanted.len()];
    let mut rows = 0usize;
    for (number, line) in lines {
        let line = line.map_err(read_err)?;
        if line.trim().is_empty() {
            continue;
        }
        let cells: Vec<&str> = line.split(',').map(str::trim).collect();
        if cells.len() != columns.len() {
            return Err(Error::Values(format!(
                "{source}:{}: {} cells, but the header has {} columns",
                number + 1,
                cells.len(),
                columns.len()
            )));
        }
        for ((_, _, at), out) in wanted.iter().zip(&mut values) {
            for &i in at {
                let v: f64 = cells[i].parse().map_err(|_| {
                    Error::Values(format!(
                        "{source}:{}: column `{}`: `{}` is not a number",
                        number + 1,
                        columns[i],
                        cells[i]
                    ))
                })?;
                out.push(v);
            }
        }
        rows += 1;
    }
    wanted
        .into_iter()
        .zip(values)
        .map(|((name, dims, _), flat)| {
            let shape: Vec<usize> = std::iter::once(rows).chain(dims).collect();
            let array = Tensor::from_shape_vec(IxDyn(&shape), flat).expect("one value per element of each row");
            Ok((name, array))
        })
        .collect()
}
