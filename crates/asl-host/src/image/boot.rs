//! The boot side of the ISO: GRUB configuration and the three scripts the build runs (as
//! captured steps). They are files rather than inline commands so that each receipt names the
//! exact script as a declared input, and the image carries them in its build history.
//!
//! The recipe is the reproducible one of the research note (anchors-image §3.6): GRUB images
//! from `grub-mkimage` (grub-mkrescue stamps the wall clock), an ESP from
//! `mkfs.fat --invariant` with a fixed serial and mtools (which honour `SOURCE_DATE_EPOCH`),
//! every file of the ISO tree touched to `SOURCE_DATE_EPOCH`, and xorriso with `-no_rc`, a
//! fixed preparer and `SOURCE_DATE_EPOCH` for the volume dates and GPT GUIDs. The result boots
//! as a CD with BIOS (El Torito, GRUB's i386-pc-eltorito) and UEFI (El Torito EFI image), and
//! as a disk with BIOS (`--grub2-mbr`) and UEFI (`-isohybrid-gpt-basdat`, the ESP in a GPT).

use crate::overlay::Profile;

/// The ISO volume id; GRUB finds the medium by a marker file of the same name.
pub fn volume_id(profile: Profile) -> &'static str {
    match profile {
        Profile::Rescue => "ASL_RESCUE",
        Profile::AuthHost => "ASL_AUTH",
    }
}

/// The configuration embedded in both GRUB images: find the medium, then read its grub.cfg.
pub fn embedded_cfg(profile: Profile) -> String {
    let v = volume_id(profile);
    format!(
        "search --no-floppy --set=root --file /live/{v}.marker\n\
set prefix=($root)/boot/grub\n\
configfile ($root)/boot/grub/grub.cfg\n"
    )
}

/// The kernel command line: live-boot from /live, console on the serial port last so that
/// /dev/console (the boot report, the preflight decision) is the serial line.
pub const CMDLINE: &str = "boot=live console=tty1 console=ttyS0,115200n8";

/// `boot/grub/grub.cfg` on the ISO.
pub fn grub_cfg(profile: Profile) -> String {
    let title = match profile {
        Profile::Rescue => "ASL rescue (live)",
        Profile::AuthHost => "ASL authority host (live, offline)",
    };
    format!(
        "serial --unit=0 --speed=115200\n\
terminal_input serial console\n\
terminal_output serial console\n\
set timeout=1\n\
set default=0\n\
menuentry \"{title}\" {{\n\
  linux /live/vmlinuz {CMDLINE}\n\
  initrd /live/initrd.img\n\
}}\n"
    )
}

/// Unpacks the base root, merges the layers, takes kernel and initramfs out and makes the
/// squashfs. zstd level 6: most of the size of the default level, a third of its time on two
/// cores. /boot is left out: the kernel and initramfs live next to the squashfs.
pub const ROOTFS_SH: &str = r#"#!/bin/sh
# asl-image: base tarball + layers -> live/filesystem.squashfs, live/vmlinuz, live/initrd.img
# usage: rootfs.sh BASE.tar ROOT_DIR ISO_DIR LAYER_DIR...
set -eu
tar=$1 root=$2 iso=$3
shift 3
rm -rf "$root"
mkdir -p "$root" "$iso/live"
tar -x -p --numeric-owner -f "$tar" -C "$root"
for layer in "$@"; do
  cp -a "$layer"/. "$root"/
done
set -- "$root"/boot/vmlinuz-*
[ "$#" -eq 1 ] || { echo "rootfs.sh: expected one kernel in /boot, found: $*" >&2; exit 1; }
cp "$1" "$iso/live/vmlinuz"
cp "$root"/boot/initrd.img-"${1##*/vmlinuz-}" "$iso/live/initrd.img"
rm -f "$iso/live/filesystem.squashfs"
mksquashfs "$root" "$iso/live/filesystem.squashfs" -noappend -no-progress -quiet \
  -comp zstd -Xcompression-level 6 -e boot
# The outputs' times, so that their receipts match another build's.
touch -d "@$SOURCE_DATE_EPOCH" "$iso/live/filesystem.squashfs" "$iso/live/vmlinuz" "$iso/live/initrd.img"
"#;

/// Makes the BIOS and UEFI GRUB images and the ESP.
pub const BOOTLOADER_SH: &str = r#"#!/bin/sh
# asl-image: GRUB for BIOS (El Torito) and UEFI (ESP image), reproducibly.
# usage: bootloader.sh CFG_DIR ISO_DIR VOLID
set -eu
cfg=$1 iso=$2 vol=$3
mkdir -p "$iso/boot/grub/i386-pc" "$iso/live"
cp "$cfg/grub.cfg" "$iso/boot/grub/grub.cfg"
echo "$vol" > "$iso/live/$vol.marker"
grub-mkimage -O i386-pc-eltorito -p /boot/grub -c "$cfg/embedded.cfg" \
  -o "$iso/boot/grub/i386-pc/eltorito.img" \
  biosdisk iso9660 part_msdos part_gpt search search_fs_file serial terminal linux normal \
  configfile echo test
grub-mkimage -O x86_64-efi -p /boot/grub -c "$cfg/embedded.cfg" -o "$cfg/bootx64.efi" \
  part_gpt part_msdos iso9660 fat search search_fs_file serial terminal linux normal \
  configfile echo test all_video efi_gop
rm -f "$iso/boot/efi.img"
mkfs.fat -C -n ASLEFI --invariant -i 41534c31 "$iso/boot/efi.img" 4096 >/dev/null
mmd -i "$iso/boot/efi.img" ::/EFI ::/EFI/BOOT
mcopy -i "$iso/boot/efi.img" "$cfg/bootx64.efi" ::/EFI/BOOT/BOOTX64.EFI
# The outputs' times, so that their receipts match another build's.
find "$iso/boot" "$iso/live/$vol.marker" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
"#;

/// Assembles the hybrid ISO.
pub const ISO_SH: &str = r#"#!/bin/sh
# asl-image: the hybrid ISO (CD and disk, BIOS and UEFI), reproducible with SOURCE_DATE_EPOCH.
# usage: iso.sh ISO_DIR VOLID OUT.iso
set -eu
iso=$1 vol=$2 out=$3
: "${SOURCE_DATE_EPOCH:?iso.sh needs SOURCE_DATE_EPOCH}"
find "$iso" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
rm -f "$out"
xorriso -no_rc -as mkisofs -quiet -iso-level 3 -r -J -joliet-long -V "$vol" \
  -preparer asl-image -publisher asl \
  -b boot/grub/i386-pc/eltorito.img -c boot/grub/boot.cat \
  -no-emul-boot -boot-load-size 4 -boot-info-table --grub2-boot-info \
  --grub2-mbr /usr/lib/grub/i386-pc/boot_hybrid.img \
  -eltorito-alt-boot -e boot/efi.img -no-emul-boot -isohybrid-gpt-basdat \
  -o "$out" "$iso"
"#;
