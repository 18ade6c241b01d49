#ifndef CLOUDTRAILBEAT_CLMDB_SHIM_H
#define CLOUDTRAILBEAT_CLMDB_SHIM_H
#include <lmdb.h>
#endif
