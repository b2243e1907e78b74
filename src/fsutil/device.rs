//! Device numbers (`rdev`): the kernel's `dev_t` split into major and minor.
//!
//! Linux encodes a device number in 64 bits with the major and minor numbers
//! interleaved (glibc's `makedev`); these helpers are thin wrappers over
//! rustix's, so that the rest of the crate never spells the bit layout.

/// The device number for `major` and `minor`, as stored in `st_rdev`.
pub(crate) fn makedev(major: u32, minor: u32) -> u64 {
    rustix::fs::makedev(major, minor)
}

/// The major number of the device number `rdev`.
pub(crate) fn major(rdev: u64) -> u32 {
    rustix::fs::major(rdev)
}

/// The minor number of the device number `rdev`.
pub(crate) fn minor(rdev: u64) -> u32 {
    rustix::fs::minor(rdev)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_small_and_large_numbers() {
        for (maj, min) in [
            (0, 0),
            (1, 3),
            (4, 64),
            (259, 1),
            (0xfff, 0xff),
            (0xffff_f000, 0xffff_ff00),
        ] {
            let dev = makedev(maj, min);
            assert_eq!((major(dev), minor(dev)), (maj, min), "dev {dev:#x}");
        }
    }

    #[test]
    fn matches_the_classic_encoding() {
        // /dev/null is 1:3, whose traditional 16-bit encoding is 0x0103.
        assert_eq!(makedev(1, 3), 0x0103);
        // Minor numbers above 255 move to bits 20..32.
        assert_eq!(makedev(8, 256), 0x0010_0800);
    }
}
