"""The two alarm-code tables of spec/alarms.md §1a/§1b, keyed by rule.

The same behaviour has different codes in the two profiles (fire is 1 for an
enterprise and 10 for a gas station), so a code is only ever looked up through
the camera's profile; nothing maps codes by name across tables.
"""

from __future__ import annotations

from dataclasses import dataclass

ENTERPRISE = "enterprise"
GAS_STATION = "gas_station"
PROFILES = (ENTERPRISE, GAS_STATION)


@dataclass(frozen=True)
class AlarmType:
    code: str  # ALARM_TYPE as sent in Table 4: no leading zero
    name_zh: str
    name_en: str
    analysis_type: str  # 分析类型


# 表1 报警类型表 (intelligent video guide §6.2(1)), enterprise profile.
ENTERPRISE_TABLE: dict[str, AlarmType] = {
    "fire": AlarmType("1", "明火", "open flame / fire", "异常状态"),
    "smoke": AlarmType("2", "烟雾", "smoke", "异常状态"),
    "climbing_fence": AlarmType("3", "翻越围栏", "climbing over a fence", "违规行为"),
    "intrusion": AlarmType("4", "区域入侵", "area intrusion", "违规行为"),
    "off_duty": AlarmType("5", "人员离岗", "person off post", "违规行为"),
    "gathering": AlarmType("6", "人员聚集", "people gathering", "违规行为"),
    "phone": AlarmType("7", "打电话", "making a phone call", "违规行为"),
    "smoking": AlarmType("8", "抽烟", "smoking", "违规行为"),
    "no_helmet": AlarmType("9", "未佩戴安全帽", "no safety helmet", "违规行为"),
    "no_workwear": AlarmType("10", "未穿着工作服", "not wearing work clothes", "违规行为"),
}

# 表1 报警类型附录表 (gas-station guide §5.2(1)), gas-station profile.
GAS_STATION_TABLE: dict[str, AlarmType] = {
    "off_duty": AlarmType("3", "人员离岗", "person off post (during unloading)", "违规行为"),
    "phone": AlarmType("6", "打电话", "making a phone call", "违规行为"),
    "smoking": AlarmType("7", "抽烟", "smoking", "违规行为"),
    "fire": AlarmType("10", "明火", "open flame / fire", "异常状态"),
    "smoke": AlarmType("11", "烟雾", "smoke", "异常状态"),
    "extinguisher_missing": AlarmType(
        "13", "灭火器未摆放在作业区域", "fire extinguisher not in the work area", "作业状态"
    ),
    "static_discharge": AlarmType(
        "14",
        "静电释放时间未达到规定时长开始进行卸油作业",
        "unloading started before the static-discharge time was reached",
        "作业状态",
    ),
}

TABLES: dict[str, dict[str, AlarmType]] = {
    ENTERPRISE: ENTERPRISE_TABLE,
    GAS_STATION: GAS_STATION_TABLE,
}

# Behaviours the seeds require that have no code of their own in either table (spec §5.1:
# 睡岗 sleeping on post).  A sleeping guard is not doing the duty, so it is reported under the
# profile's off-duty code (5 enterprise, 3 gas station) and the record carries the reason.
REPORTED_AS: dict[str, str] = {"sleeping": "off_duty"}
REPORT_REASON: dict[str, str] = {
    "sleeping": "睡岗 sleeping on post: no code of its own, reported as 人员离岗 off duty"
}
UNCODED_RULES: frozenset[str] = frozenset()  # rules that need an explicit alarm_type (none now)


class UnknownAlarm(LookupError):
    """The rule has no code in this profile's table."""


def alarm_type(profile: str, rule: str) -> AlarmType:
    """The Table-4 alarm type of ``rule`` for a camera of ``profile``."""
    try:
        table = TABLES[profile]
    except KeyError:
        raise UnknownAlarm(f"unknown profile {profile!r} (expected one of {PROFILES})") from None
    try:
        return table[REPORTED_AS.get(rule, rule)]
    except KeyError:
        raise UnknownAlarm(f"rule {rule!r} has no alarm code in the {profile} table") from None


def rules_for(profile: str) -> list[str]:
    """The rules that produce a coded alarm for this profile."""
    return list(TABLES[profile])
