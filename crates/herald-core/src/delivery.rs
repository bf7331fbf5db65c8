//! Where a message's delivery to one endpoint stands.

/// Where a message's delivery to one endpoint stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryState {
    Pending,
    Sending,
    Succeeded,
    Failed,
    Dead,
}

impl DeliveryState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Sending => "sending",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Dead => "dead",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => Self::Pending,
            "sending" => Self::Sending,
            "succeeded" => Self::Succeeded,
            "failed" => Self::Failed,
            "dead" => Self::Dead,
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_round_trip_through_their_names() {
        use DeliveryState::*;
        for (state, name) in [
            (Pending, "pending"),
            (Sending, "sending"),
            (Succeeded, "succeeded"),
            (Failed, "failed"),
            (Dead, "dead"),
        ] {
            assert_eq!(state.as_str(), name);
            assert_eq!(DeliveryState::parse(name), Some(state));
        }
        assert_eq!(DeliveryState::parse("Dead"), None);
        assert_eq!(DeliveryState::parse(""), None);
    }
}
