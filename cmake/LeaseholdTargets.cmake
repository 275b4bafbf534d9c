# Helpers for the targets every backend and test binary declares alike.

# leasehold_add_backend(<name> <source>... [LINK <private dependency>...])
# The backend library leasehold_<name> (leasehold::<name>, installed), on the
# core and -- privately -- the backend kit and <LINK>.
function(leasehold_add_backend name)
  cmake_parse_arguments(PARSE_ARGV 1 arg "" "" "LINK")
  add_library(leasehold_${name} ${arg_UNPARSED_ARGUMENTS})
  add_library(leasehold::${name} ALIAS leasehold_${name})
  set_target_properties(leasehold_${name} PROPERTIES EXPORT_NAME ${name}
    OUTPUT_NAME leasehold_${name})
  target_link_libraries(leasehold_${name} PUBLIC leasehold::core
    PRIVATE leasehold::kit ${arg_LINK} $<BUILD_INTERFACE:leasehold_warnings>)
  install(TARGETS leasehold_${name} EXPORT leaseholdTargets COMPONENT dev)
endfunction()

# leasehold_discover_tests(<target> FILTER <gtest filter> LABEL <label>
#                          OTHERS <label> [TIMEOUT <s>] [ENVIRONMENT <var=value>])
# Registers the GoogleTest cases of <target> with CTest: those matching FILTER
# labelled LABEL, all the others OTHERS (CTest labels: unit, integration,
# fault, benchmark). TIMEOUT defaults to 300 s. Fault tests count as two of
# CTest's parallel jobs (PROCESSORS 2), and so do the heavy tests among the
# others (LEASEHOLD_HEAVY_TESTS).
#
# Heavy: a conformance test whose 200 clients each hold a connection and renew
# every third of a 1-2 s TTL. Beside three other tests on two cores, a server
# with 200 backends (PostgreSQL: a process each) was seen not to answer one
# statement in 330 ms.
set(LEASEHOLD_HEAVY_TESTS "*ManyLeasesAreHeldAtOnce*")
function(leasehold_discover_tests target)
  cmake_parse_arguments(PARSE_ARGV 1 arg "" "FILTER;LABEL;OTHERS;TIMEOUT;ENVIRONMENT" "")
  if(NOT arg_TIMEOUT)
    set(arg_TIMEOUT 300)
  endif()
  set(environment)
  if(arg_ENVIRONMENT)
    set(environment ENVIRONMENT "${arg_ENVIRONMENT}")
  endif()
  # filter | label | CTest jobs it counts as. A fault test (servers paused,
  # killed, clocks jumped) has the tightest timing bounds.
  set(fault_processors 1)
  if(arg_LABEL STREQUAL "fault")
    set(fault_processors 2)
  endif()
  set(heavy "${LEASEHOLD_HEAVY_TESTS}")
  foreach(part IN ITEMS "${arg_FILTER}|${arg_LABEL}|${fault_processors}"
                        "${heavy}-${arg_FILTER}|${arg_OTHERS}|2"
                        "-${arg_FILTER}:${heavy}|${arg_OTHERS}|1")
    string(REPLACE "|" ";" part "${part}")
    list(GET part 0 filter)
    list(GET part 1 label)
    list(GET part 2 processors)
    gtest_discover_tests(${target} TEST_FILTER "${filter}"
      PROPERTIES LABELS ${label} TIMEOUT ${arg_TIMEOUT} PROCESSORS ${processors} ${environment}
      DISCOVERY_MODE PRE_TEST)
  endforeach()
endfunction()
