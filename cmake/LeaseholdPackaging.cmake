# Debian packages, built by `cpack -G DEB` in a build directory:
#   leasehold          the CLI; its Depends come from dpkg-shlibdeps (the
#                      shared libraries the binary links: libcurl, libpq,
#                      hiredis, gRPC, ... as this build has them)
#   libleasehold-dev   the static libraries, headers and CMake package files
#                      (find_package(leasehold)); Depends: the -dev packages
#                      the exported targets of this build link, which
#                      leaseholdConfig.cmake finds
# Installed under /usr. Tested by tests/install/deb.sh.
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME leasehold)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "${PROJECT_DESCRIPTION}")
set(CPACK_PACKAGE_CONTACT "The leasehold developers <leasehold@example.invalid>")
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_STRIP_FILES ON)  # the CLI only: CMake strips executables, not archives
set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_COMPONENTS_ALL dev)
if(TARGET leasehold)
  list(APPEND CPACK_COMPONENTS_ALL cli)
endif()
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_CLI_PACKAGE_NAME leasehold)
set(CPACK_DEBIAN_CLI_PACKAGE_SECTION utils)
set(CPACK_DEBIAN_CLI_PACKAGE_SHLIBDEPS ON)
set(CPACK_COMPONENT_CLI_DESCRIPTION
    "leasehold command-line tool: run a command while holding a lease, status, watch, break")
set(CPACK_DEBIAN_DEV_PACKAGE_NAME libleasehold-dev)
set(CPACK_DEBIAN_DEV_PACKAGE_SECTION libdevel)
set(CPACK_COMPONENT_DEV_DESCRIPTION
    "leasehold C++20 library: distributed leases with fencing tokens (static libraries, headers, CMake package)")
set(dev_depends "cmake (>= 3.25)")
if(LEASEHOLD_WITH_SQLITE)
  list(APPEND dev_depends libsqlite3-dev)
endif()
if(LEASEHOLD_WITH_KUBERNETES)
  list(APPEND dev_depends "libcurl4-openssl-dev | libcurl-dev" libyaml-cpp-dev)
endif()
if(LEASEHOLD_WITH_ETCD)
  list(APPEND dev_depends pkg-config libgrpc++-dev libprotobuf-dev)
endif()
if(LEASEHOLD_WITH_POSTGRESQL)
  list(APPEND dev_depends pkg-config libpq-dev)
endif()
if(LEASEHOLD_WITH_REDIS)
  list(APPEND dev_depends pkg-config libhiredis-dev libssl-dev)
endif()
if(LEASEHOLD_WITH_PROMETHEUS)
  list(APPEND dev_depends prometheus-cpp-dev)
endif()
list(REMOVE_DUPLICATES dev_depends)
list(JOIN dev_depends ", " CPACK_DEBIAN_DEV_PACKAGE_DEPENDS)
include(CPack)
