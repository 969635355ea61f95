//! JSON as Go's `encoding/json` writes it, where serde's default differs.

use serde::{
    Serializer,
    de::{self, DeserializeSeed, IntoDeserializer, MapAccess, SeqAccess, Visitor},
};
use serde_json::{Map, Value};

/// Largest magnitude Go writes without an exponent (`encoding/json` switches to `e` notation at
/// 1e21); every integer below it that an f64 holds exactly is written without a fraction.
const GO_PLAIN_LIMIT: f64 = 1e21;
/// Integers beyond this are not all exact in an f64; written as floats.
const EXACT_LIMIT: f64 = 9_007_199_254_740_992.0;

/// An optional `float64` as Go writes it: `1000000`, not serde's `1000000.0` (so that the stored
/// value reads back as the same JSON number in both languages' generic decoders).
pub fn serialize_opt_f64<S: Serializer>(v: &Option<f64>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(f) if f.fract() == 0.0 && f.abs() < GO_PLAIN_LIMIT.min(EXACT_LIMIT) => {
            // Exact: |f| < 2^53 and integral.
            s.serialize_i64(*f as i64)
        }
        Some(f) => s.serialize_f64(*f),
        None => s.serialize_none(),
    }
}

/// Decodes a JSON value into a model type the way Go's `encoding/json` decodes into Calico's
/// structs: an object key that is not exactly a field name matches the field whose name equals
/// it ignoring case (`ipipmode` is `ipipMode`). Keys of maps (labels, annotations, ...) are left
/// alone. The value is rewritten in place, so afterwards it holds the canonical field names.
///
/// With `yaml_scalars`, a number or boolean where a string is expected becomes its text
/// (`labels: {version: 1}`), as `sigs.k8s.io/yaml` converts YAML scalars for string fields
/// before calicoctl's JSON decoding.
pub(crate) struct GoDecoder<'a> {
    pub(crate) value: &'a mut Value,
    pub(crate) yaml_scalars: bool,
}

type Error = serde_json::Error;

impl<'a> GoDecoder<'a> {
    /// Renames keys of `map` that match a field of `fields` only ignoring case. A key that would
    /// land on a field also given under another spelling is an error (Go would keep whichever
    /// comes last in the input, an order this decoder does not keep).
    fn fold_keys(map: &mut Map<String, Value>, fields: &[&str]) -> Result<(), Error> {
        let renames: Vec<(String, &str)> = map
            .keys()
            .filter(|k| !fields.contains(&k.as_str()))
            .filter_map(|k| {
                let lower = k.to_lowercase();
                fields
                    .iter()
                    .find(|f| f.to_lowercase() == lower)
                    .map(|f| (k.clone(), *f))
            })
            .collect();
        for (from, to) in renames {
            if map.contains_key(to) {
                return Err(de::Error::custom(format!(
                    "field {to:?} is given twice (also as {from:?})"
                )));
            }
            if let Some(v) = map.remove(&from) {
                map.insert(to.to_string(), v);
            }
        }
        Ok(())
    }
}

struct Entries<'a> {
    iter: serde_json::map::IterMut<'a>,
    pending: Option<&'a mut Value>,
    yaml_scalars: bool,
}

impl<'de, 'a> MapAccess<'de> for Entries<'a> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        match self.iter.next() {
            Some((k, v)) => {
                self.pending = Some(v);
                let key: de::value::StringDeserializer<Error> = k.clone().into_deserializer();
                seed.deserialize(key).map(Some)
            }
            None => Ok(None),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
        let value = self
            .pending
            .take()
            .ok_or_else(|| <Error as de::Error>::custom("value without key"))?;
        seed.deserialize(GoDecoder {
            value,
            yaml_scalars: self.yaml_scalars,
        })
    }
}

struct Items<'a> {
    iter: std::slice::IterMut<'a, Value>,
    yaml_scalars: bool,
}

impl<'de, 'a> SeqAccess<'de> for Items<'a> {
    type Error = Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Error> {
        match self.iter.next() {
            Some(value) => seed
                .deserialize(GoDecoder {
                    value,
                    yaml_scalars: self.yaml_scalars,
                })
                .map(Some),
            None => Ok(None),
        }
    }
}

macro_rules! forward_to_value {
    ($($method:ident)*) => {
        $(
            fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
                self.value.clone().$method(visitor)
            }
        )*
    };
}

impl<'de, 'a> de::Deserializer<'de> for GoDecoder<'a> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let yaml_scalars = self.yaml_scalars;
        match self.value {
            Value::Object(map) => visitor.visit_map(Entries {
                iter: map.iter_mut(),
                pending: None,
                yaml_scalars,
            }),
            Value::Array(items) => visitor.visit_seq(Items {
                iter: items.iter_mut(),
                yaml_scalars,
            }),
            other => other.clone().deserialize_any(visitor),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        if let Value::Object(map) = &mut *self.value {
            Self::fold_keys(map, fields)?;
        }
        self.deserialize_any(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.value {
            Value::Object(_) => self.deserialize_any(visitor),
            other => other.clone().deserialize_map(visitor),
        }
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.value {
            Value::Array(_) => self.deserialize_any(visitor),
            other => other.clone().deserialize_seq(visitor),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.value {
            Value::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_string(visitor)
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.value {
            Value::Number(n) if self.yaml_scalars => visitor.visit_string(n.to_string()),
            Value::Bool(b) if self.yaml_scalars => visitor.visit_string(b.to_string()),
            other => other.clone().deserialize_string(visitor),
        }
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.value.clone().deserialize_unit_struct(name, visitor)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.value.clone().deserialize_enum(name, variants, visitor)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_unit()
    }

    forward_to_value! {
        deserialize_bool deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64
        deserialize_i128 deserialize_u8 deserialize_u16 deserialize_u32 deserialize_u64
        deserialize_u128 deserialize_f32 deserialize_f64 deserialize_char deserialize_bytes
        deserialize_byte_buf deserialize_unit deserialize_identifier
    }
}
