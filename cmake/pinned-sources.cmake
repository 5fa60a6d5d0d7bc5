# Debian source package versions and SHA256 of their upstream tarballs (checked on unpacking).
set(DEQFORMER_LAMMPS_DEBVER "20220106.git7586adbb6a+ds1-2")
set(DEQFORMER_LAMMPS_ORIG_SHA256 "65146c615ad24d8b8bc64f4e05e86226a7f1fdb45c0b5ea9416562b9f3863082")
set(DEQFORMER_TRILINOS_DEBVER "13.2.0-4")
set(DEQFORMER_TRILINOS_ORIG_SHA256 "0ddb47784ba7b8a6b9a07a4822b33be508feb4ccd54301b2a5d10c9e54524b90")
# Compatibility build (DEQFORMER_COMPAT_LAMMPS): trixie's lammps = LAMMPS stable 4Feb2025. Only the upstream
# tarball is fetched (bookworm's apt cannot parse trixie's .dsc); its SHA256 is the Sources index's.
set(DEQFORMER_COMPAT_LAMMPS_DEBVER "20250204+dfsg.1-2")
set(DEQFORMER_COMPAT_LAMMPS_ORIG_SHA256 "3671165bd52fad36734e0a9136c5bc5ecb225e03988f8c89aa13366a8b53b1c7")
