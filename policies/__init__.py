"""Learners. Each is one module; this table maps an ``--algo`` name to it (loaded lazily)."""

LEARNERS: dict[str, tuple[str, str]] = {
    # name: ("module:LearnerClass", "module:ConfigDataclass")
    "sac": ("embodied.policies.sac:SAC", "embodied.policies.sac:SACCfg"),
    "ppo": ("embodied.policies.ppo:PPO", "embodied.policies.ppo:PPOCfg"),
    "srl": ("embodied.policies.srl:SRL", "embodied.policies.srl:SRLCfg"),
    "aacd": ("embodied.policies.aacd:AACD", "embodied.policies.aacd:AACDCfg"),
    "aac": ("embodied.policies.aacd:AAC", "embodied.policies.aacd:AACCfg"),
    "tbsac": ("embodied.policies.tbsac:TBSAC", "embodied.policies.tbsac:TBSACCfg"),
    "relic": ("embodied.policies.relic:ReLIC", "embodied.policies.relic:ReLICCfg"),
    "lstm_nav": ("embodied.policies.relic:LSTMNav", "embodied.policies.relic:LSTMNavCfg"),
}
