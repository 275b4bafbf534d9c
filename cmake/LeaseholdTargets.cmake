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
  install(TARGETS leasehold_${name} EXPORT leaseholdTargets)
endfunction()

# leasehold_discover_tests(<target> FILTER <gtest filter> LABEL <label>
#                          OTHERS <label> [TIMEOUT <s>] [ENVIRONMENT <var=value>])
# Registers the GoogleTest cases of <target> with CTest: those matching FILTER
# labelled LABEL, all the others OTHERS (CTest labels: unit, integration,
# fault, benchmark). TIMEOUT defaults to 300 s. Fault tests count as two of
# CTest's parallel jobs (PROCESSORS 2).
function(leasehold_discover_tests target)
  cmake_parse_arguments(PARSE_ARGV 1 arg "" "FILTER;LABEL;OTHERS;TIMEOUT;ENVIRONMENT" "")
  if(NOT arg_TIMEOUT)
    set(arg_TIMEOUT 300)
  endif()
  set(environment)
  if(arg_ENVIRONMENT)
    set(environment ENVIRONMENT "${arg_ENVIRONMENT}")
  endif()
  foreach(half IN ITEMS "${arg_FILTER}|${arg_LABEL}" "-${arg_FILTER}|${arg_OTHERS}")
    string(REPLACE "|" ";" half "${half}")
    list(GET half 0 filter)
    list(GET half 1 label)
    # A fault test (servers paused, killed, clocks jumped) counts as two of
    # CTest's parallel jobs: its timing bounds are the tightest.
    set(processors 1)
    if(label STREQUAL "fault")
      set(processors 2)
    endif()
    gtest_discover_tests(${target} TEST_FILTER "${filter}"
      PROPERTIES LABELS ${label} TIMEOUT ${arg_TIMEOUT} PROCESSORS ${processors} ${environment}
      DISCOVERY_MODE PRE_TEST)
  endforeach()
endfunction()
