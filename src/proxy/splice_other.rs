//! Zero-copy relaying needs Linux's splice(2) and tee(2); elsewhere taps always copy, and
//! this type, which has no values, keeps the relay's code the same on every platform.

use crate::capture::Direction;
use std::io;

use super::record::ConnRecorder;

pub(super) enum ZeroCopy {}

impl ZeroCopy {
    pub fn prepare(&mut self) -> io::Result<()> {
        match *self {}
    }

    pub async fn take(&mut self, _max: usize) -> io::Result<usize> {
        match *self {}
    }

    pub fn take_out(&mut self, _buf: &mut [u8]) -> io::Result<()> {
        match *self {}
    }

    pub fn record(&mut self, _conn: &ConnRecorder, _direction: Direction, _n: usize) {
        match *self {}
    }

    pub async fn forward(&mut self, _n: usize) -> io::Result<()> {
        match *self {}
    }
}
