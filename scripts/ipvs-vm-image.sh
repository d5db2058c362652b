#!/bin/bash
# ipvs-vm-image.sh OUTDIR: builds the guest that internal/vmtest boots under
# qemu (TCG) so that tests meet a real kernel IPVS, which the host kernel
# lacks. The guest runs Debian's own kernel (the one linux-image-amd64 points
# at today) and a busybox initramfs.
#
# OUTDIR gets:
#   vmlinux         the uncompressed PVH kernel: booting it directly skips the
#                   kernel's self-decompression, about 3 s per boot under TCG
#   base.cpio.gz    busybox, /init, ip, ipvsadm, nft and the modules below,
#                   padded to 512 bytes so that a per-run archive can be
#                   appended (each part must start 4-byte aligned)
#   kernel-version  the guest's uname -r
#   stamp           kernel package + checksum of this script; when both still
#                   match, the script exits at once
#
# Packet marking in the guest uses nftables, not iptables-legacy: nft is
# already a host dependency (Makefile DEPS), nft_meta is built into
# nf_tables.ko, and nf_tables auto-loads. Verified in the guest with
#   nft add table ip mangle
#   nft add chain ip mangle prerouting '{ type filter hook prerouting priority -150; }'
#   nft add rule ip mangle prerouting ip daddr 10.0.0.5 meta mark set 7
#
# /init runs /test/run.sh (from an archive appended per run; later files
# win), prints "XLBD-VM-EXIT <rc>" and leaves qemu through isa-debug-exit
# (qemu then exits 2*rc+1). See /work/shared/IPVS-VM-NOTES.md.
set -euo pipefail

out=${1:?usage: $0 OUTDIR}
export PATH=$PATH:/usr/sbin:/sbin
export LC_ALL=C
log() { echo "ipvs-vm-image: $*" >&2; }

# --- host tools -------------------------------------------------------------
# package:probe, as in the Makefile's deps target.
static_busybox() { [ -x /bin/busybox ] && ! ldd /bin/busybox >/dev/null 2>&1; }
missing=""
command -v qemu-system-x86_64 >/dev/null || missing+=" qemu-system-x86"
static_busybox || missing+=" busybox-static"
command -v cpio >/dev/null || missing+=" cpio"
command -v depmod >/dev/null || missing+=" kmod"
command -v xz >/dev/null || missing+=" xz-utils"
[ -x /sbin/ip ] || [ -x /usr/sbin/ip ] || missing+=" iproute2"
[ -x /usr/sbin/ipvsadm ] || [ -x /sbin/ipvsadm ] || missing+=" ipvsadm"
[ -x /usr/sbin/nft ] || [ -x /sbin/nft ] || missing+=" nftables"
updated=""
if [ -n "$missing" ]; then
	log "installing:$missing"
	apt-get update -qq
	updated=1
	aptlog=$(mktemp)
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >"$aptlog" 2>&1 ||
		{ cat "$aptlog" >&2; rm -f "$aptlog"; exit 1; }
	rm -f "$aptlog"
	static_busybox || { log "/bin/busybox is not static"; exit 1; }
fi

self=$(sha256sum "${BASH_SOURCE[0]}" | cut -d' ' -f1)
cached() { [ -f "$out/vmlinux" ] && [ -f "$out/base.cpio.gz" ] && [ "$(cat "$out/stamp" 2>/dev/null)" = "$1" ]; }
# apt-cache rebuilds its cache on every call here (0.8 s); while the package
# lists are older than the stamp, the kernel it names cannot have changed.
if [ -f "$out/stamp" ] && [ -z "$(find /var/lib/apt/lists -maxdepth 1 -newer "$out/stamp" -print -quit 2>/dev/null)" ] &&
	cached "$(awk '{print $1}' "$out/stamp") $self"; then
	exit 0
fi

# The ABI in the package name changes with point releases, so ask the
# metapackage instead of naming it.
kpkg_name() { apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-/{print $2; exit}'; }
K=$(kpkg_name)
if [ -z "$K" ] && [ -z "$updated" ]; then
	apt-get update -qq
	K=$(kpkg_name)
fi
[ -n "$K" ] || { log "cannot resolve linux-image-amd64 to a kernel package"; exit 1; }

stamp="$K $self"
mkdir -p "$out"
# Parallel `go test` runs and make may both call this.
exec 9>"$out/.lock"
flock 9
if cached "$stamp"; then
	touch "$out/stamp"
	exit 0
fi
rm -f "$out/stamp"
start=$SECONDS

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
log "downloading $K"
(cd "$tmp" && apt-get download -qq -o APT::Sandbox::User=root "$K")
deb=$(echo "$tmp"/*.deb)

# Only the kernel and the module trees that hold what we ship; a dependency
# outside them is fetched on demand below. This saves writing 300 MB.
kx=$tmp/kpkg
mkdir "$kx"
extract() { dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$kx" --wildcards "$@"; }
extract './boot/vmlinuz-*' './lib/modules/*/modules.*' './lib/modules/*/kernel/net/*' \
	'./lib/modules/*/kernel/crypto/*' './lib/modules/*/kernel/lib/*' './lib/modules/*/kernel/drivers/net/*'
kver=$(basename "$(echo "$kx"/lib/modules/*)")
kmod=$kx/lib/modules/$kver

log "extracting vmlinux ($kver)"
vmlinuz=$(echo "$kx"/boot/vmlinuz-*)
off=$(grep -abo $'\xfd7zXZ' "$vmlinuz" | head -1 | cut -d: -f1)
# Without --single-stream xz trips over the data after the stream and exits
# 1; tail is not piped because it dies of SIGPIPE when xz stops reading.
xz -dc --single-stream < <(tail -c +$((off + 1)) "$vmlinuz") >"$out/.vmlinux.new"

# --- initramfs --------------------------------------------------------------
root=$tmp/root
mkdir -p "$root"/{bin,sbin,proc,sys,dev,run,tmp,var,etc,lib/modules/"$kver"}
ln -s /run "$root/var/run"
# The kernel opens /dev/console before /init runs; without it /init has no output.
mknod "$root/dev/console" c 5 1
cp /bin/busybox "$root/bin/busybox"

# Host binaries with their libraries and loader, at the same paths (cp -L:
# /lib64 and /lib are symlinks on merged-/usr hosts, the guest has real dirs).
for b in ip ipvsadm nft; do
	src=$(command -v $b)
	cp -L "$src" "$root/sbin/$b"
	for lib in $(ldd "$src" | grep -o '/[^ ]*'); do
		[ -e "$root$lib" ] || cp -L --parents "$lib" "$root"
	done
done

# Modules: name -> kernel/... path from modules.order; dependencies from
# modinfo, recursively. crc32c_generic is libcrc32c's softdep, which busybox
# modprobe ignores, so it is listed explicitly.
declare -A path want
while read -r p; do
	n=${p##*/}
	n=${n%.ko}
	path[${n//-/_}]=$p
done <"$kmod/modules.order"
queue=(crc32c_generic veth dummy bridge nf_tables sctp)
for p in "$kmod"/kernel/net/netfilter/ipvs/ip_vs*.ko; do
	n=${p##*/}
	n=${n%.ko}
	[ "$n" = ip_vs_ftp ] || queue+=("$n")
done
while [ ${#queue[@]} -gt 0 ]; do
	n=${queue[0]}
	queue=("${queue[@]:1}")
	[ -z "${want[$n]:-}" ] || continue
	p=${path[$n]:-}
	[ -n "$p" ] || { log "module $n not in $K"; exit 1; }
	[ -f "$kmod/$p" ] || extract "./lib/modules/$kver/$p"
	want[$n]=$p
	for d in $(modinfo -F depends "$kmod/$p" | tr , ' '); do
		queue+=("${d//-/_}")
	done
done
for n in "${!want[@]}"; do
	mkdir -p "$(dirname "$root/lib/modules/$kver/${want[$n]}")"
	cp "$kmod/${want[$n]}" "$root/lib/modules/$kver/${want[$n]}"
done
cp "$kmod"/modules.order "$kmod"/modules.builtin* "$root/lib/modules/$kver/"
depmod -b "$root" "$kver"

cat >"$root/init" <<'EOF'
#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/sbin:/usr/sbin:/bin:/usr/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /tmp
# The default /sbin/modprobe does not exist: without this neither scheduler
# autoload nor libcrc32c's crc32c lookup works.
echo /bin/modprobe >/proc/sys/kernel/modprobe
for m in crc32c_generic ip_vs veth bridge nf_tables; do
	modprobe $m || echo "xlbd-vm: modprobe $m failed"
done
# busybox ash prefers its own ip applet, which lacks netns: use the path.
/sbin/ip link set lo up
rc=0
if [ -f /test/run.sh ]; then
	sh /test/run.sh
	rc=$?
else
	echo "xlbd-vm: no /test/run.sh"
fi
# On a line of its own even when the script's output did not end in one.
printf '\nXLBD-VM-EXIT %d\n' $rc
printf "\\$(printf %o $rc)" | dd of=/dev/port bs=1 seek=244 count=1 2>/dev/null
poweroff -f
EOF
chmod 755 "$root/init"

(cd "$root" && find . | sort | cpio -o -H newc -R 0:0 --quiet) | gzip -1 >"$out/.base.cpio.gz.new"
truncate -s %512 "$out/.base.cpio.gz.new"

# Renames within OUTDIR, so a guest booting meanwhile keeps its old files.
mv -f "$out/.vmlinux.new" "$out/vmlinux"
mv -f "$out/.base.cpio.gz.new" "$out/base.cpio.gz"
echo "$kver" >"$out/kernel-version"
echo "$stamp" >"$out/stamp"
log "built $out for $kver: ${#want[@]} modules, base $(du -h "$out/base.cpio.gz" | cut -f1), $((SECONDS - start)) s"
