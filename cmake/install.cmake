# Install rules and the Debian package (CPack). Included by the top-level CMakeLists.txt.
#
# This file is the single source of the installed file list: the RPM spec
# (contrib/rpm/phantom-token-agent.spec) runs "cmake --install" and only marks what lands in the
# buildroot, and tests/integration/test_packaging.py checks the same paths.
#
#   <prefix>/sbin/phantom-token-agent                       the daemon
#   /etc/phantom-token-agent/agent.conf                     its configuration (a conffile)
#   /etc/haproxy/phantom-token.conf                         the SPOE engine file (a conffile)
#   <prefix>/lib/systemd/system/phantom-token-agent.service the systemd unit
#   <prefix>/share/man/man8/phantom-token-agent.8           the man page
#   <prefix>/share/doc/phantom-token-agent/{README.md,LICENSE,examples/haproxy.cfg}
#
# The client secret is never installed: the administrator creates
# /etc/phantom-token-agent/client-secret (mode 0600, root) and the unit hands it to the daemon
# through LoadCredential=.
include(GNUInstallDirs)

# /etc is not below the prefix: configuration files have fixed, absolute destinations so that
# CMAKE_INSTALL_PREFIX=/usr still puts them in /etc (GNUInstallDirs would give /usr/etc).
set(PTA_SYSCONFDIR "/etc" CACHE PATH "Where the configuration files go (absolute)")
# Relative: below the prefix (/usr/lib/systemd/system for the packages), so that --prefix and
# CPack move it along; an absolute path is taken as is.
set(PTA_SYSTEMD_UNITDIR "lib/systemd/system"
    CACHE STRING "Where the systemd unit goes (relative to the prefix, or absolute)")
set(PTA_CONFDIR "${PTA_SYSCONFDIR}/phantom-token-agent")
set(PTA_HAPROXY_CONFDIR "${PTA_SYSCONFDIR}/haproxy")

if(TARGET phantom-token-agent)
  install(TARGETS phantom-token-agent RUNTIME DESTINATION ${CMAKE_INSTALL_SBINDIR})
endif()

install(FILES ${CMAKE_SOURCE_DIR}/contrib/agent.conf DESTINATION ${PTA_CONFDIR}
        PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ)
install(FILES ${CMAKE_SOURCE_DIR}/spoe/phantom-token.conf DESTINATION ${PTA_HAPROXY_CONFDIR}
        PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ)
install(FILES ${CMAKE_SOURCE_DIR}/contrib/systemd/phantom-token-agent.service
        DESTINATION ${PTA_SYSTEMD_UNITDIR})
install(FILES ${CMAKE_SOURCE_DIR}/contrib/phantom-token-agent.8
        DESTINATION ${CMAKE_INSTALL_MANDIR}/man8)
install(FILES ${CMAKE_SOURCE_DIR}/README.md ${CMAKE_SOURCE_DIR}/LICENSE
        DESTINATION ${CMAKE_INSTALL_DOCDIR})
install(FILES ${CMAKE_SOURCE_DIR}/haproxy-conf/haproxy.cfg
        DESTINATION ${CMAKE_INSTALL_DOCDIR}/examples)

# ---- Debian package: cmake --build build --target package (or: cd build && cpack -G DEB) ------
set(CPACK_GENERATOR "DEB")
set(CPACK_PACKAGE_NAME "phantom-token-agent")
set(CPACK_PACKAGE_VERSION "${PROJECT_VERSION}")
set(CPACK_PACKAGE_CONTACT "phantom-token-agent maintainers <root@localhost>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY
    "HAProxy SPOE agent for the Phantom Token pattern (RFC 7662 introspection)")
set(CPACK_PACKAGE_DESCRIPTION
    "Swaps the opaque Bearer tokens clients send for the JWTs the identity server returns from\
 RFC 7662 token introspection, so that HAProxy forwards a JWT to the API.")
set(CPACK_PACKAGING_INSTALL_PREFIX "/usr")
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION "net")
set(CPACK_DEBIAN_PACKAGE_LICENSE "Apache-2.0")
set(CPACK_DEBIAN_PACKAGE_DEPENDS "libev4, libcurl4, libjansson4, libssl3, libmicrohttpd12")
set(CPACK_DEBIAN_PACKAGE_RECOMMENDS "haproxy")
set(CPACK_STRIP_FILES ON)
# dpkg keeps local edits of these on upgrade (and asks).
set(PTA_DEB_CONFFILES "${CMAKE_BINARY_DIR}/deb-control/conffiles")
file(WRITE ${PTA_DEB_CONFFILES}
     "${PTA_CONFDIR}/agent.conf\n${PTA_HAPROXY_CONFDIR}/phantom-token.conf\n")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA "${PTA_DEB_CONFFILES}")
# The absolute /etc destinations are intended (see PTA_SYSCONFDIR).
set(CPACK_WARN_ON_ABSOLUTE_INSTALL_DESTINATION OFF)
include(CPack)
