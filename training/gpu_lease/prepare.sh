#!/usr/bin/env bash
# Run here (with PyPI), before a GPU lease: the device machine has torch, numpy, scipy,
# scikit-image, typer, rich and safetensors but none of the DICOM stack and no network, and one
# call carries at most 64 MiB (the tracked tree included). So the wheels the node imports are
# downloaded for the device's Python (3.12, x86-64), packed into one tar and split into two
# halves: the first lease call parks half A in /tmp, the second carries half B and runs
# training/gpu_lease/run_ct.sh. Versions are pinned to what the tests ran with where a wheel for
# Python 3.12 exists (pylibjpeg-libjpeg is not: no 2.5 wheel for 3.12 was found).
set -euo pipefail
cd "$(dirname "$0")/../.."
KIT=.kit
WHEELS=(simpleitk==2.5.7 pydicom==3.0.2 pynetdicom==3.0.4 highdicom==0.28.2 pyjpegls==1.5.1
        pylibjpeg==2.1.0 pylibjpeg-libjpeg pylibjpeg-openjpeg==2.6.0 pylibjpeg-rle==2.2.0
        sqlalchemy==2.1.9 greenlet alembic==1.20.1 mako==1.4.3 pydantic==2.14.4
        pydantic-core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5)
grep -qx '/.kit/' .git/info/exclude 2>/dev/null || echo '/.kit/' >> .git/info/exclude
rm -rf "$KIT" && mkdir -p "$KIT/wheels" "$KIT/a" "$KIT/b"
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
  --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
  --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 -d "$KIT/wheels" "${WHEELS[@]}"
tar -C "$KIT" -cf "$KIT/wheels.tar" wheels
split -b 40M -d "$KIT/wheels.tar" "$KIT/part."
mv "$KIT"/part.00 "$KIT/a/" && mv "$KIT"/part.* "$KIT/b/"
rm -rf "$KIT/wheels" "$KIT/wheels.tar"
du -sh "$KIT/a" "$KIT/b"
echo "lease call 1: run(command='mkdir -p /tmp/kit && cp .kit/a/* /tmp/kit/', carry=['.kit/a'])"
echo "lease call 2: run(command='bash training/gpu_lease/run_ct.sh', carry=['.kit/b'], timeout_s=595)"
