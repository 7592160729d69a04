//! Rows for `COPY ... FROM STDIN (FORMAT binary)`, encoded into one buffer
//! and sent at once.
//!
//! COPY is PostgreSQL's cheapest way in for many rows: no parameter arrays
//! to unpack and no set-returning function to materialise, and heap pages
//! are filled many rows at a time (one WAL record per page, not per row).
//! Binary COPY does no casts, so each value is written in exactly the
//! column's type.

use bytes::{BufMut, Bytes, BytesMut};

/// The binary COPY header: signature, flags, header extension length.
const HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";

/// A binary COPY stream being written, row by row.
pub(super) struct BinaryRows {
    buf: BytesMut,
}

impl BinaryRows {
    /// `bytes` is a guess at the stream's size, so it is written without
    /// growing.
    pub fn with_capacity(bytes: usize) -> Self {
        let mut buf = BytesMut::with_capacity(HEADER.len() + bytes + 2);
        buf.put_slice(HEADER);
        Self { buf }
    }

    /// Starts a row of `fields` values, which follow in column order.
    pub fn row(&mut self, fields: i16) -> &mut Self {
        self.buf.put_i16(fields);
        self
    }

    pub fn int8(&mut self, value: i64) -> &mut Self {
        self.buf.put_i32(8);
        self.buf.put_i64(value);
        self
    }

    pub fn int4(&mut self, value: Option<i32>) -> &mut Self {
        match value {
            Some(v) => {
                self.buf.put_i32(4);
                self.buf.put_i32(v);
            }
            None => self.null(),
        }
        self
    }

    pub fn bool(&mut self, value: bool) -> &mut Self {
        self.buf.put_i32(1);
        self.buf.put_u8(u8::from(value));
        self
    }

    pub fn text(&mut self, value: &str) -> &mut Self {
        self.len(value.len());
        self.buf.put_slice(value.as_bytes());
        self
    }

    /// jsonb's binary form: a version byte, then the JSON text.
    pub fn jsonb(&mut self, json: Option<&str>) -> &mut Self {
        match json {
            Some(json) => {
                self.len(json.len() + 1);
                self.buf.put_u8(1);
                self.buf.put_slice(json.as_bytes());
            }
            None => self.null(),
        }
        self
    }

    fn null(&mut self) {
        self.buf.put_i32(-1);
    }

    /// A field's length; values stay far below 1 GB (the body limit).
    fn len(&mut self, len: usize) {
        self.buf.put_i32(i32::try_from(len).unwrap_or(i32::MAX));
    }

    /// The whole stream, trailer included.
    pub fn finish(mut self) -> Bytes {
        self.buf.put_i16(-1);
        self.buf.freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_is_its_field_count_then_each_length_and_value() {
        let mut rows = BinaryRows::with_capacity(0);
        rows.row(4).int8(7).text("ab").int4(None).jsonb(Some("[]"));
        let bytes = rows.finish();
        let mut expected = HEADER.to_vec();
        expected.extend_from_slice(&4i16.to_be_bytes());
        expected.extend_from_slice(&8i32.to_be_bytes());
        expected.extend_from_slice(&7i64.to_be_bytes());
        expected.extend_from_slice(&2i32.to_be_bytes());
        expected.extend_from_slice(b"ab");
        expected.extend_from_slice(&(-1i32).to_be_bytes());
        expected.extend_from_slice(&3i32.to_be_bytes());
        expected.extend_from_slice(b"\x01[]");
        expected.extend_from_slice(&(-1i16).to_be_bytes());
        assert_eq!(bytes.as_ref(), expected.as_slice());
    }
}
