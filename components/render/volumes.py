"""The XSLT every libvirt volume's XML passes through before the provider creates it.

The libvirt provider writes `<permissions><mode>644</mode>` into each volume it creates, so
root disks (later holding the cluster CA key and etcd) would be readable by every user of the
hypervisor host. This stylesheet replaces the mode with 0600 and keeps everything else.
"""

from __future__ import annotations

VOLUME_MODE = "0600"

PRIVATE_VOLUME_XSLT = f"""\
<?xml version="1.0"?>
<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform">
  <xsl:output method="xml" omit-xml-declaration="yes" indent="yes"/>
  <xsl:template match="@*|node()">
    <xsl:copy><xsl:apply-templates select="@*|node()"/></xsl:copy>
  </xsl:template>
  <xsl:template match="/volume/target">
    <xsl:copy>
      <xsl:apply-templates select="@*|node()[not(self::permissions)]"/>
      <permissions>
        <xsl:apply-templates select="permissions/*[not(self::mode)]"/>
        <mode>{VOLUME_MODE}</mode>
      </permissions>
    </xsl:copy>
  </xsl:template>
  <xsl:template match="/volume[not(target)]">
    <xsl:copy>
      <xsl:apply-templates select="@*|node()"/>
      <target><permissions><mode>{VOLUME_MODE}</mode></permissions></target>
    </xsl:copy>
  </xsl:template>
</xsl:stylesheet>
"""
