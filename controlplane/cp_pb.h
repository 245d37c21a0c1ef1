/*
 * cp_pb.h - short names for the generated protobuf-c types the control
 * plane uses everywhere.
 */
#ifndef CP_PB_H
#define CP_PB_H

#include "sluice/admin/v1/admin.pb-c.h"
#include "sluice/config/v1/config.pb-c.h"
#include "sluice/sync/v1/sync.pb-c.h"

typedef Sluice__Config__V1__Tenant cp_tenant_pb;
typedef Sluice__Config__V1__VirtualKey cp_vkey_pb;
typedef Sluice__Config__V1__Quota cp_quota_pb;
typedef Sluice__Config__V1__Target cp_target_pb;
typedef Sluice__Config__V1__Provider cp_provider_pb;
typedef Sluice__Config__V1__Provider__ParamsEntry cp_param_pb;
typedef Sluice__Config__V1__Credential cp_cred_pb;
typedef Sluice__Config__V1__Credential__ParamsEntry cp_cred_param_pb;
typedef Sluice__Config__V1__ModelPrice cp_model_pb;
typedef Sluice__Admin__V1__Document cp_doc_pb;
typedef Sluice__Admin__V1__Change cp_change_pb;
typedef Sluice__Admin__V1__ApplyResponse cp_apply_resp_pb;
typedef Sluice__Sync__V1__Snapshot cp_snapshot_pb;
typedef Sluice__Sync__V1__Removed cp_removed_pb;
typedef Sluice__Sync__V1__UsageReport cp_report_pb;
typedef Sluice__Sync__V1__UsageEntry cp_usage_pb;
typedef Sluice__Sync__V1__WatchRequest cp_watch_req_pb;

#define CP_DESC(name) (&sluice__config__v1__##name##__descriptor)

#endif
