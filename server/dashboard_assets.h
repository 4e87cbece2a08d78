// The dashboard's files (server/http/dashboard/), embedded in spoold at build time by
// embed_assets.cmake, so the page works offline and needs no build step at run time.
#ifndef SPOOL_SERVER_DASHBOARD_ASSETS_H_
#define SPOOL_SERVER_DASHBOARD_ASSETS_H_

#include <string_view>

namespace spool::server {

struct DashboardAsset {
  std::string_view path;  // "/" for index.html, else "/assets/<file>"
  std::string_view content_type;
  std::string_view body;
};

// nullptr when there is no such file.
const DashboardAsset* FindDashboardAsset(std::string_view path);

}  // namespace spool::server

#endif  // SPOOL_SERVER_DASHBOARD_ASSETS_H_
